"""`charnn show`'s page: the playground's own files with one text's data inside, one HTML file that
opens with no server and no network (the page's scoring and cell views, docs/playground.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATIC = Path(__file__).parent / "static"


def offline_page(data: dict[str, Any]) -> str:
    """The page with its style, its script and ``data`` inlined (``window.CHARNN_OFFLINE``)."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    css = (STATIC / "page.css").read_text(encoding="utf-8")
    script = (STATIC / "page.js").read_text(encoding="utf-8")
    # "</" would end the script element early, and "<!--" then "<script" would make the HTML parser read on
    # past its end: every "<" (only ever inside a JSON string) is spelled "\u003c", which JSON reads as "<".
    blob = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c")
    html = html.replace('<link rel="stylesheet" href="/static/page.css">', f"<style>\n{css}</style>")
    script = script.replace("</", "<\\/")
    inline = f"<script>window.CHARNN_OFFLINE = {blob};</script>\n<script>\n{script}</script>"
    return html.replace('<script src="/static/page.js"></script>', inline)
