#!/usr/bin/env bash
# The Debian packages scripts/build.sh needs beside pip's, installed with apt-get where missing:
#   npm       required: it fetches the JavaScript the book's pages load (require.js, the ipywidgets
#             HTML manager, MathJax);
#   chromium  optional: only the browser tests (tests/test_browser.py, tests/test_jupyterlab.py)
#             drive it; without it they skip, and the study and the book build all the same.
# SKIP_APT=1 installs nothing: a missing npm is then an error, a missing chromium one line.
# CAPSLIB_CHROMIUM: the chromium binary to use instead of `chromium` on PATH (the tests read it too).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
step() { printf '\n==> %s\n' "$*"; }

apt_install() {
    if [ "${SKIP_APT:-0}" = 1 ]; then return 1; fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null; then sudo="sudo"; else echo "error: need root (or sudo) to apt-get install $*" >&2; return 1; fi
    fi
    if [ -z "${APT_UPDATED:-}" ]; then $sudo apt-get update -qq; APT_UPDATED=1; fi
    $sudo apt-get install -y -qq --no-install-recommends "$@"
}

# the chromium the browser tests would drive, or nothing
find_chromium() {
    if [ -n "${CAPSLIB_CHROMIUM:-}" ]; then
        if [ -x "$CAPSLIB_CHROMIUM" ]; then echo "$CAPSLIB_CHROMIUM"; fi
    else
        command -v chromium || true
    fi
}

# npm: the book needs it
if ! command -v npm >/dev/null; then
    if [ "${SKIP_APT:-0}" = 1 ]; then
        echo "error: npm not found and SKIP_APT=1: install npm (Debian: apt-get install nodejs npm), it fetches the book's JavaScript" >&2
        exit 1
    fi
    step "apt-get install nodejs npm"
    apt_install nodejs npm
fi

# chromium: only the browser tests need it
chromium="$(find_chromium)"
if [ -z "$chromium" ] && [ -z "${CAPSLIB_CHROMIUM:-}" ] && [ "${SKIP_APT:-0}" != 1 ]; then
    step "apt-get install chromium"
    apt_install chromium || true
    chromium="$(find_chromium)"
fi
if [ -n "$chromium" ]; then
    step "chromium: $("$chromium" --version 2>/dev/null || echo "$chromium")"
else
    why="${CAPSLIB_CHROMIUM:+CAPSLIB_CHROMIUM=$CAPSLIB_CHROMIUM is not there}"
    why="${why:-$([ "${SKIP_APT:-0}" = 1 ] && echo "SKIP_APT=1" || echo "apt-get could not install it")}"
    echo "no chromium ($why): the browser tests will skip; the study and the book need none"
fi
