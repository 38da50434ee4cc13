"""The book's Sphinx extension, loaded by ``_config.yml`` (``sphinx: local_extensions``) as the
top-level module ``sphinx_ext``: it imports nothing of capslib (nor torch)."""
import json


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


def setup(app):
    """Sphinx extension of the book (``sphinx: local_extensions`` in _config.yml)."""
    app.connect("html-page-context", _dedupe_scripts, priority=1)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
