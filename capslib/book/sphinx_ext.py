"""The book's Sphinx extension, loaded by ``_config.yml`` (``sphinx: local_extensions``) as the
top-level module ``sphinx_ext``: it imports nothing of capslib (nor torch)."""
import json
import shutil
from pathlib import Path


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """Drop repeated <script> entries: under Sphinx 7.4 the inline scripts of sphinx-thebe and
    sphinx-togglebutton come twice (once with filename None, once ""), and ``const THEBE_JS_URL``
    declared twice is a JavaScript error on every page. Runs first (priority 1): a later
    handler may return a template name, which ends the event."""
    files = context.get("script_files")
    if not files:
        return
    seen, keep = set(), []
    for js in files:
        key = (getattr(js, "filename", str(js)) or "",      # inline scripts: None or ""
               json.dumps(getattr(js, "attributes", {}), sort_keys=True, default=str))
        if key not in seen:
            seen.add(key)
            keep.append(js)
    files[:] = keep


DRAWS_WITH_PLOTLY = ("plotly-graph-div", "capslib-chooser")   # a figure's div; a chooser's


def _plotly_where_drawn(app, pagename, templatename, context, doctree) -> None:
    """Load plotly.js (``html_js_files``, 4.8 MB to fetch and about a second of a core to run)
    only on the pages that draw with it: a Plotly figure or a chapter's chooser (``chooser.js``
    draws with the site's plotly.js). The prose pages and the index do without."""
    files, body = context.get("script_files"), context.get("body")
    if not files or body is None or any(mark in body for mark in DRAWS_WITH_PLOTLY):
        return
    files[:] = [js for js in files if not str(getattr(js, "filename", js) or "").endswith("plotly.min.js")]


def _copy_galleries(app, exception) -> None:
    """Copy the executed chapters' gallery strips (``book/<profile>/galleries/*.png``, written
    beside each chapter when it ran) to the same place in the built site, where the pages'
    relative ``src`` finds them. Sphinx copies only images a page references statically."""
    if exception is not None or app.builder.format != "html":
        return
    src_root, out_root = Path(app.srcdir), Path(app.outdir)
    for folder in sorted(src_root.glob("book/*/galleries")):
        target = out_root / folder.relative_to(src_root)
        target.mkdir(parents=True, exist_ok=True)
        for png in folder.glob("*.png"):
            dst = target / png.name
            if not dst.exists() or dst.stat().st_size != png.stat().st_size or dst.stat().st_mtime < png.stat().st_mtime:
                shutil.copy2(png, dst)


def setup(app):
    """Sphinx extension of the book (``sphinx: local_extensions`` in _config.yml)."""
    app.connect("html-page-context", _dedupe_scripts, priority=1)
    app.connect("html-page-context", _plotly_where_drawn, priority=2)
    app.connect("build-finished", _copy_galleries)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
