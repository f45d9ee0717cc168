"""ASGI entry point: what gunicorn serves in production (deploy/gunicorn.conf.py, its asyncio worker).

Django's ASGI handler reads a request's whole body (to a temporary file) before any view can refuse it, so the
body is bounded here first: a declared or streamed body over ``AUTOML_MAX_UPLOAD_BYTES`` plus room for the
multipart framing is answered 413 without being stored.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "automl_site.settings")
django_application = get_asgi_application()

FRAMING_BYTES = 1024 * 1024  # multipart boundaries and the other form fields beside the file


class BodyLimit:
    """Answer 413 to an HTTP request whose body is (or turns out to be) larger than ``limit`` bytes."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._too_large(send)
        seen = 0

        async def bounded_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # a chunked body without a length: stop reading, the view never runs
                    return {"type": "http.disconnect"}
            return message

        return await self.app(scope, bounded_receive, send)

    async def _too_large(self, send: Any) -> None:
        body = b'{"detail": "request body too large"}'
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _limit() -> int:
    from django.conf import settings

    return settings.AUTOML["MAX_UPLOAD_BYTES"] + FRAMING_BYTES


application = BodyLimit(django_application, _limit())
