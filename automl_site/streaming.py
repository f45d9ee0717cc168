"""Files served under ASGI without holding them whole in memory.

Django's ASGI handler reads a synchronous streaming response into a list before sending it
(``StreamingHttpResponse.__aiter__``), so a 200 MB artifact download would cost 200 MB of the web process. A
``FileResponse`` (artifact downloads, WhiteNoise's static files) is given an asynchronous iterator instead, which
reads one block at a time in a worker thread. Under WSGI nothing changes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import FileResponse, HttpRequest, HttpResponseBase


class AsyncFileStreamMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        filelike = getattr(response, "file_to_stream", None)
        if isinstance(request, ASGIRequest) and isinstance(response, FileResponse) and filelike is not None:
            response.streaming_content = _blocks(filelike, response.block_size)
        return response


async def _blocks(filelike: Any, size: int) -> AsyncIterator[bytes]:
    read = sync_to_async(filelike.read, thread_sensitive=False)
    while block := await read(size):
        yield block
