#!/usr/bin/env bash
# One command on a fresh machine (Debian/Ubuntu, Python >= 3.10, no GPU needed):
#   1. installs everything from this repository's own files: PyTorch's CPU build, capslib with
#      its book and test extras, Debian's chromium (for the browser test), npm (to fetch the
#      widget JavaScript from the npm registry);
#   2. runs the quick profile (`python -m capslib run --profile quick`; finished cells are skipped);
#   3. executes the notebooks and builds the Jupyter Book (`python -m capslib book --profile quick`).
# Environment: PYTHON (default python3), CAPSLIB_RESULTS (default results), CAPSLIB_DATA,
# SKIP_APT=1 to install no Debian packages (then chromium and npm must already be there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
t_start=$(date +%s)
step() { printf '\n==> %s\n' "$*"; }

step "python: $($PY --version 2>&1) at $(command -v "$PY")"
$PY - <<'PYEOF'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"error: Python >= 3.10 needed, this is {sys.version.split()[0]}")
PYEOF

# 1a. PyTorch first: a bare `torch` requirement would pull the newest CUDA build (gigabytes)
if $PY -c "import torch" 2>/dev/null; then
    step "torch $($PY -c 'import torch; print(torch.__version__)') already installed"
else
    # pip's configured find-links hold the CPU wheel on this project's machines; elsewhere set
    # TORCH_INDEX_URL to PyTorch's CPU wheel index (see the README)
    step "installing torch==2.13.0 (CPU build)"
    $PY -m pip install "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi

# 1b. capslib, editable, with what the book and the tests need
step "pip install -e .[book,test,lab,cluster]"
$PY -m pip install -e ".[book,test,lab,cluster]"

# 1c. Debian packages: chromium for the browser test, npm for the widget JavaScript
apt_install() {
    if [ "${SKIP_APT:-0}" = 1 ]; then echo "SKIP_APT=1: not installing $*" >&2; return 1; fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null; then sudo="sudo"; else echo "error: need root (or sudo) to apt-get install $*" >&2; return 1; fi
    fi
    if [ -z "${APT_UPDATED:-}" ]; then $sudo apt-get update -qq; APT_UPDATED=1; fi
    $sudo apt-get install -y -qq --no-install-recommends "$@"
}
if [ ! -x /usr/bin/chromium ]; then step "apt-get install chromium"; apt_install chromium; fi
step "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo missing)"
if ! command -v npm >/dev/null; then step "apt-get install npm"; apt_install nodejs npm; fi

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
