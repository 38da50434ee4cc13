#!/usr/bin/env bash
# One chunk of the paper grid on a lent GPU machine, inside its 10-minute command limit.
#
# On the device machine, from the repo root (the working tree travels; the store under
# results/paper travels with it, so finished cells are skipped):
#
#   CAPSLIB_COMMIT=<sha> bash scripts/gpu_chunk.sh BUDGET_SECONDS [python -m capslib run options]
#
# e.g.  CAPSLIB_COMMIT=1a2b3c bash scripts/gpu_chunk.sh 480 --protocol imbalanced --dataset mnist --bf16
#
# The data come from .devdata/ (git-ignored; copy the dataset's torchvision folder there
# and name .devdata in the call's carry); the machine has torch, numpy, scikit-learn and
# tqdm, so nothing is installed. No cell is started that would likely end after
# BUDGET_SECONDS; the cells this run finished are packed into $OUT/cells.tgz (unpack it
# in the repo root here and commit results/paper), its log into $OUT/run.log.
# CAPSLIB_COMMIT stands in for `git rev-parse` in the cells' provenance (no .git there);
# CAPSLIB_RESULTS, if set, is the results root instead of results/.
set -euo pipefail
budget=${1:?usage: gpu_chunk.sh BUDGET_SECONDS [capslib run options]}
shift
out=${OUT:-$(mktemp -d)}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
stamp=$(mktemp)
status=0
python3 -m capslib run --profile paper --data-root .devdata --time-budget "$budget" --no-progress "$@" \
    2>&1 | tee "$out/run.log" || status=$?
store="${CAPSLIB_RESULTS:-results}/paper"
mkdir -p "$store/cells"
(cd "$store" && find cells -mindepth 1 -maxdepth 1 -type d -newer "$stamp" -print0 \
    | tar --null -czf "$out/cells.tgz" -T -)
echo "packed $(tar -tzf "$out/cells.tgz" | grep -c 'cell.json$' || true) finished cells into $out/cells.tgz"
exit $status
