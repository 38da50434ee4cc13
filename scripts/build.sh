#!/usr/bin/env bash
# One command on a fresh machine (Debian/Ubuntu, Python >= 3.10, no GPU needed):
#   1. installs everything from this repository's own files: PyTorch's CPU build, capslib with
#      every extra of pyproject.toml, npm (to fetch the widget JavaScript from the npm registry)
#      and Debian's chromium (for the browser tests only; scripts/debian_packages.sh);
#   2. runs the quick profile (`python -m capslib run --profile quick`; finished cells are skipped);
#   3. executes the notebooks and builds the Jupyter Book (`python -m capslib book --profile quick`).
# Environment: PYTHON (default python3), CAPSLIB_RESULTS (default: this checkout's results/),
# CAPSLIB_DATA, TORCH_INDEX_URL (default: PyTorch's CPU wheel index), SKIP_APT=1 to install no
# Debian packages (npm must then be there; without chromium the browser tests skip),
# CAPSLIB_CHROMIUM (a chromium binary other than `chromium` on PATH).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
# What it installs, from pyproject.toml (tests/test_setup_files.py checks these three lines against it):
# every extra of [project.optional-dependencies], and torch's version and CPU index of [tool.capslib.setup]
EXTRAS="book,test,lab,cluster"
TORCH_VERSION="2.13.0"
TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
t_start=$(date +%s)
step() { printf '\n==> %s\n' "$*"; }

step "python: $($PY --version 2>&1) at $(command -v "$PY")"
$PY - <<'PYEOF'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"error: Python >= 3.10 needed, this is {sys.version.split()[0]}")
PYEOF

# 1a. PyTorch first: a bare `torch` requirement would pull PyPI's CUDA build on Linux (gigabytes).
#     PyTorch's CPU index beside PyPI: pip takes its 2.13.0+cpu over PyPI's 2.13.0 (a local
#     version sorts above its public one); pip's configured find-links may hold the CPU wheel too.
if $PY -c "import torch" 2>/dev/null; then
    step "torch $($PY -c 'import torch; print(torch.__version__)') already installed"
else
    step "installing torch==$TORCH_VERSION (CPU build; extra index ${TORCH_INDEX_URL:-$TORCH_CPU_INDEX})"
    $PY -m pip install "torch==$TORCH_VERSION" --extra-index-url "${TORCH_INDEX_URL:-$TORCH_CPU_INDEX}"
    if [ "$($PY -c 'import torch; print(torch.version.cuda is not None)')" = True ]; then
        echo "note: pip installed a CUDA build of torch (was PyTorch's CPU index reachable?); it runs on a CPU too"
    fi
fi

# 1b. capslib, editable, with every extra: the book, the tests, JupyterLab, the Dask engine
step "pip install -e .[$EXTRAS]"
$PY -m pip install -e ".[$EXTRAS]"

# 1c. Debian packages: npm for the widget JavaScript; chromium for the browser tests (optional)
bash scripts/debian_packages.sh

# 1d. the JavaScript the static pages load: plotly.js (pip), require.js, the ipywidgets HTML
#     manager and MathJax (npm pack, pinned versions and checksums) into _vendor/
step "vendoring plotly.js, require.js, @jupyter-widgets/html-manager, MathJax into _vendor/"
$PY -c "from capslib.book.common import find_root; from capslib.book.vendor import vendor_js; print(vendor_js(find_root('.')))"

# 2. the quick profile: both protocols on scikit-learn's embedded digits, on the CPU
step "python -m capslib run --profile quick"
t0=$(date +%s)
$PY -m capslib run --profile quick --no-progress
echo "quick profile: $(( $(date +%s) - t0 )) s"

# 3. the book
step "python -m capslib book --profile quick"
t0=$(date +%s)
$PY -m capslib book --profile quick
echo "book: $(( $(date +%s) - t0 )) s"

step "done in $(( $(date +%s) - t_start )) s. The book: $(pwd)/_build/html/index.html"
echo "  serve it:  $PY -m http.server --bind 127.0.0.1 --directory _build/html 8000   (then open http://127.0.0.1:8000)"
echo "  test it:   bash scripts/test.sh"
