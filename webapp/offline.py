"""Keep the page from reaching the internet: Gradio's page links a script on cdnjs (iframe-resizer, for embedding in
Hugging Face Spaces) and preconnects to Google Fonts. This ASGI middleware removes ``<script src="http(s)://...">``
and ``<link href="http(s)://...">`` tags from the HTML the app serves, so a browser loads the page from the app
alone. Other responses (the event stream, JSON, assets) pass through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

EXTERNAL_TAGS = re.compile(
    rb"<script\b[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>|<link\b[^>]*\bhref=[\"']https?://[^>]*>",
    re.IGNORECASE | re.DOTALL,
)


def strip_external(html: bytes) -> bytes:
    """``html`` without the tags that would make a browser load something from another host."""
    return EXTERNAL_TAGS.sub(b"", html)


class NoExternalResources:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                html = headers.get(b"content-type", b"").startswith(b"text/html")
                if html and b"content-encoding" not in headers:
                    held = message  # sent once the whole body is in
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = strip_external(b"".join(chunks))
                headers = [(k, v) for k, v in held.get("headers", []) if k.lower() != b"content-length"]
                await send({**held, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, rewrite)
