#!/usr/bin/env bash
# The whole pytest suite, right after scripts/build.sh (it installs nothing), on TEST_WORKERS
# processes (pytest-xdist; 0 runs it in this process). The default, 3 on the two cores it was
# sized for, keeps both cores busy while a worker waits on a browser, a subprocess or a sleep.
# Each worker runs torch on one thread (tests/conftest.py). Tests go to whichever worker is free, the longest first
# (--dist loadgroup, in the order tests/conftest.py gives them: --no-loadscope-reorder);
# the tests of a module that share a module-scoped fixture (the synthetic 1,035-cell book, the
# served site) stay together on one worker, so it is built once (tests/conftest.py).
# The browser tests read the book that build.sh built (_build/html); they skip when there is
# none, except with CI=true, where a missing book fails. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"`.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
workers="${TEST_WORKERS:-3}"
if [ "$workers" = 0 ]; then
    $PY -m pytest -ra "$@"
else
    # one thread per worker for every thread pool, set before any library loads (the workers' own
    # numpy/OpenBLAS and scikit-learn's OpenMP read these once, at load; torch's is set in
    # tests/conftest.py): idle pool threads spin-wait, and beside two other busy workers that burns
    # CPU for no gain
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-1}" \
        MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
    $PY -m pytest -ra -n "$workers" --dist loadgroup --no-loadscope-reorder "$@"
fi
rc=$?
if [ "$rc" = 5 ]; then
    echo "error: pytest collected no test (exit 5)" >&2
    exit 1
fi
exit "$rc"
