"""The page is served without tags that would load something from another host (no internet needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from webapp.offline import NoExternalResources, strip_external

pytestmark = pytest.mark.unit

PAGE = b"""<html><head><link rel="preconnect" href="https://fonts.gstatic.com" crossorigin="anonymous" />
<script
  src="https://cdnjs.cloudflare.com/ajax/libs/iframe-resizer/4.3.1/iframeResizer.contentWindow.min.js"
  async
></script><script src="./assets/index.js"></script><link rel="stylesheet" href="/theme.css">
<meta property="og:image" content="https://example.org/a.jpg"></head><body>ok</body></html>"""


def test_external_script_and_link_tags_are_removed_local_ones_kept() -> None:
    html = strip_external(PAGE)
    assert b"cdnjs" not in html and b"fonts.gstatic" not in html
    assert b'<script src="./assets/index.js"></script>' in html and b'href="/theme.css"' in html
    assert b"<body>ok</body>" in html


async def _serve(content_type: bytes, body: bytes, chunks: int = 2) -> list[dict[str, Any]]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        step = len(body) // chunks + 1
        parts = [body[i : i + step] for i in range(0, len(body), step)]
        for n, part in enumerate(parts):
            await send({"type": "http.response.body", "body": part, "more_body": n < len(parts) - 1})

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(dict(message))

    async def receive() -> Any:
        return {"type": "http.request"}

    await NoExternalResources(app)({"type": "http"}, receive, send)
    return sent


def test_the_middleware_rewrites_html_and_fixes_its_length() -> None:
    sent = asyncio.run(_serve(b"text/html; charset=utf-8", PAGE))
    start, body = sent
    assert body["body"] == strip_external(PAGE)
    assert dict(start["headers"])[b"content-length"] == str(len(body["body"])).encode()


def test_other_responses_pass_untouched() -> None:
    data = b'{"src": "https://x"}' * 3
    sent = asyncio.run(_serve(b"application/json", data, chunks=3))
    assert b"".join(m.get("body", b"") for m in sent[1:]) == data and len(sent) == 4
