"""The JavaScript the static book loads, vendored at build time, never fetched from a CDN by
a page: plotly.js from the pip package, and require.js, the ipywidgets HTML manager and MathJax
from the npm registry (``npm pack`` at pinned versions, checksums verified). All of it goes to
``_vendor/`` (git-ignored), which Sphinx serves as ``_static/`` (see BOOK-NOTES)."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

from capslib.book.common import BookError, log

VENDOR_DIR = "_vendor"          # not "_static": Jupyter Book would add every .js in it to every page
# npm packages the static widgets need: (spec, tarball name, integrity from `npm pack --json`)
NPM_PACKAGES = {
    "html-manager": ("@jupyter-widgets/html-manager@1.0.15", "jupyter-widgets-html-manager-1.0.15.tgz",
                     "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA=="),
    "requirejs": ("requirejs@2.3.8", "requirejs-2.3.8.tgz",
                  "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw=="),
    # math in the pages: Sphinx's default mathjax_path is a CDN
    "mathjax": ("mathjax@3.2.2", "mathjax-3.2.2.tgz",
                "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="),
}
# Runs before embed-amd.js on every page with saved widgets (see nb_ipywidgets_js in _config.yml):
# - the widget manager looks up its fonts next to the AMD module it defines, which require.js
#   places relative to the *page*; point that module, and the manager's asset path, at this folder;
# - the widget controls typeset labels with MathJax 2's ``MathJax.Hub.Queue``, which MathJax 3
#   (the book's) lacks: give every MathJax object a ``Hub.Queue`` that calls ``typesetPromise``.
# The manager's stylesheet is evaluated before the bundle points its public path at
# window.__jupyter_widgets_assets_path__, so its font URLs came out relative to the page
# (book/quick/@jupyter-widgets/<hash>.woff2: 404, no icons). Each font module's URL is made to
# read the assets path itself (set by assets-path.js, which runs first).
FONT_MODULE = re.compile(rb'\b(\w)\.p\+"([0-9a-f]{20}\.(?:woff2?|ttf|eot|svg))"')


PATCH_LEVEL = 1   # bump when what is done to the npm files changes: a vendored copy is then redone


def font_urls_from_assets_path(bundle: bytes) -> bytes:
    out, n = FONT_MODULE.subn(rb'(window.__jupyter_widgets_assets_path__||\1.p)+"\2"', bundle)
    if n == 0:
        raise BookError("embed-amd.js: no font module found to point at the assets path (new html-manager version?)")
    return out


ASSETS_PATH_JS = r"""// written by capslib.book.build
(function () {
  var here = document.currentScript.src.replace(/[?#].*$/, "").replace(/[^/]*$/, "");
  window.__jupyter_widgets_assets_path__ = here;
  if (window.require && window.require.config) {
    window.require.config({paths: {"@jupyter-widgets/html-manager/dist": here.replace(/\/$/, "")}});
  }
  var hub = {Queue: function (job) {
    var el = job && job[2];
    (function go(tries) {
      var mj = window.MathJax;
      if (mj && mj.typesetPromise) { mj.typesetPromise(el ? [el] : undefined).catch(function () {}); }
      else if (tries > 0) { setTimeout(function () { go(tries - 1); }, 100); }
    })(100);
  }};
  var current = window.MathJax;
  if (current && typeof current === "object" && !current.Hub) { current.Hub = hub; }
  Object.defineProperty(window, "MathJax", {configurable: true, enumerable: true,
    get: function () { return current; },
    set: function (v) { current = v; if (v && typeof v === "object" && !v.Hub) { v.Hub = hub; } }});
})();
"""


def vendor_js(root: Path) -> Path:
    """Put plotly.min.js and the widget JavaScript under ``_vendor/`` (served as ``_static/``)."""
    import plotly
    vendor = root / VENDOR_DIR
    vendor.mkdir(exist_ok=True)
    src = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    if not src.exists():
        raise BookError(f"{src} missing: reinstall plotly")
    dst = vendor / "plotly.min.js"
    if not dst.exists() or dst.stat().st_size != src.stat().st_size or dst.read_bytes() != src.read_bytes():
        shutil.copyfile(src, dst)
    widgets = vendor / "widgets"
    stamp = vendor / "NPM-VERSIONS.json"
    want = {**{k: v[0] for k, v in NPM_PACKAGES.items()}, "capslib-patches": PATCH_LEVEL}
    needed = [widgets / "embed-amd.js", widgets / "require.min.js", vendor / "mathjax" / "tex-mml-chtml.js"]
    if not (stamp.exists() and json.loads(stamp.read_text()) == want and all(p.exists() for p in needed)):
        fetch_npm_js(root, vendor)
        stamp.write_text(json.dumps(want, indent=1))
    (widgets / "assets-path.js").write_text(ASSETS_PATH_JS)
    return vendor


def fetch_npm_js(root: Path, vendor: Path) -> None:
    """``npm pack`` the pinned packages (into ``.tmp/npm``), check their checksums, unpack what the pages load."""
    cache = root / ".tmp" / "npm"
    cache.mkdir(parents=True, exist_ok=True)
    missing = [v for v in NPM_PACKAGES.values() if not (cache / v[1]).exists()]
    if missing:
        npm = shutil.which("npm")
        if npm is None:
            raise BookError("npm not found: it fetches the ipywidgets JavaScript from the npm registry "
                            "(bash scripts/build.sh installs it; or apt-get install npm)")
        log(f"npm pack {' '.join(v[0] for v in missing)}")
        r = subprocess.run([npm, "pack", *[v[0] for v in missing]], cwd=cache, capture_output=True, text=True)
        if r.returncode != 0:
            raise BookError(f"npm pack failed:\n{r.stderr.strip()[-2000:]}")
    widgets, mathjax = vendor / "widgets", vendor / "mathjax"
    for d in (widgets, mathjax):
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
    for name, (spec, tgz, integrity) in NPM_PACKAGES.items():
        data = (cache / tgz).read_bytes()
        algo, _, want = integrity.partition("-")
        got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
        if got != want:
            (cache / tgz).unlink()
            raise BookError(f"{tgz}: checksum mismatch (got {algo}-{got}); deleted, rerun to fetch it again")
        with tarfile.open(cache / tgz) as tf:
            if name == "requirejs":
                (widgets / "require.min.js").write_bytes(tf.extractfile("package/require.js").read())
            elif name == "mathjax":   # the es5 bundle loads its fonts and extensions relative to itself
                for m in tf.getmembers():
                    rel = m.name[len("package/es5/"):] if m.name.startswith("package/es5/") else None
                    # the one combined bundle the book loads, and what it may load lazily
                    # (not the other bundles, the SVG output or the speech engine)
                    if not (m.isfile() and rel) or rel.startswith(("sre/", "output/svg")) or (
                            "/" not in rel and rel != "tex-mml-chtml.js"):
                        continue
                    out = mathjax / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(tf.extractfile(m).read())
                (mathjax / "LICENSE").write_bytes(tf.extractfile("package/LICENSE").read())
            else:
                for m in tf.getmembers():
                    rel = m.name[len("package/dist/"):] if m.name.startswith("package/dist/") else None
                    if m.isfile() and rel and "/" not in rel and (
                            rel == "embed-amd.js" or rel.rsplit(".", 1)[-1] in ("woff", "woff2", "ttf", "eot", "svg")):
                        data = tf.extractfile(m).read()
                        (widgets / rel).write_bytes(font_urls_from_assets_path(data) if rel == "embed-amd.js" else data)
                (widgets / "LICENSE.html-manager.txt").write_bytes(tf.extractfile("package/LICENSE").read()
                                                                   if "package/LICENSE" in tf.getnames() else b"BSD-3-Clause\n")


