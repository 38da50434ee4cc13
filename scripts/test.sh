#!/usr/bin/env bash
# The whole pytest suite, right after scripts/build.sh (it installs nothing).
# The browser tests read the book that build.sh built (_build/html); they skip when there is
# none, except with CI=true, where a missing book fails. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"`.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
$PY -m pytest -ra "$@"
rc=$?
if [ "$rc" = 5 ]; then
    echo "error: pytest collected no test (exit 5)" >&2
    exit 1
fi
exit "$rc"
