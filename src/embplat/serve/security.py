"""Who may call the service and how much one request may send.

* An API key, when configured, is required in the ``X-API-Key`` header on every route but
  the page, its static files, the health probes and the OpenAPI docs; keys are compared in
  constant time.
* A request body larger than the limit is refused with 413 before it is read, whether it
  declares its length or streams it (chunked).
* ``platform serve`` refuses a non-loopback address without a key (:func:`is_loopback`).
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

API_KEY_HEADER = "X-API-Key"
#: Reachable without the key: the page, its files, probes and the API's own docs.
PUBLIC = ("/", "/favicon.ico", "/healthz", "/readyz", "/docs", "/openapi.json")
PUBLIC_PREFIXES = ("/static/", "/docs/")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_public(path: str) -> bool:
    """Whether ``path`` is served without the API key."""
    return path in PUBLIC or path.startswith(PUBLIC_PREFIXES)


async def send_error(send: Send, status: int, error: str, detail: str) -> None:
    """Answer a raw ASGI request with the service's JSON error body."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: the API key and the request size limit."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body: int) -> None:
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.api_key and not is_public(scope["path"]):
            given = headers.get(API_KEY_HEADER.lower(), "")
            if not secrets.compare_digest(given.encode(), self.api_key.encode()):
                what = "wrong" if given else "missing"
                await send_error(
                    send,
                    401,
                    "unauthorized",
                    f"{what} API key: send it in the {API_KEY_HEADER} header",
                )
                return
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await send_error(send, 413, "too_large", self._too_large())
            return
        await self.app(scope, self._counting(receive), send)

    def _too_large(self) -> str:
        return f"request body over {self.max_body} bytes; send fewer or smaller images"

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge(self._too_large())
            return message

        return wrapped


class BodyTooLarge(Exception):
    """A streamed body passed the limit; the app's handler answers 413."""
