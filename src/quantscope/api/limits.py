"""Request size limits as a pure ASGI middleware: URL length, header count/bytes and body size.

The API takes its input from the path and query string, so the limits are tight. Rejections are
JSON like every other error (`error` + `message`), answered before the app sees the request, so an
oversized request costs no route work, no database query and no body buffering beyond the cap.

uvicorn's parser refuses a request head it cannot take (h11: over 16 KiB; httptools, the default
when installed: malformed or over its own cap) with a plain-text 400 before Python; the header cap
here sits below both, so every request that reaches Python gets the JSON answer.
"""

from __future__ import annotations

import orjson

MAX_URL_BYTES = 4096           # path + query string
MAX_HEADER_COUNT = 64
MAX_HEADER_BYTES = 8 * 1024    # names + values, all headers together
MAX_BODY_BYTES = 64 * 1024     # no endpoint takes a body; small JSON bodies stay possible


class RequestLimits:
    def __init__(self, app, *, max_url_bytes: int = MAX_URL_BYTES, max_header_count: int = MAX_HEADER_COUNT,
                 max_header_bytes: int = MAX_HEADER_BYTES, max_body_bytes: int = MAX_BODY_BYTES):
        self.app = app
        self.max_url_bytes = max_url_bytes
        self.max_header_count = max_header_count
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        raw_path = scope.get("raw_path") or scope.get("path", "").encode("utf-8", "surrogateescape")
        url_bytes = len(raw_path) + len(scope.get("query_string", b""))
        if url_bytes > self.max_url_bytes:
            return await _reject(send, 414, "uri_too_long",
                                 f"request URL is {url_bytes} bytes; the limit is {self.max_url_bytes}")
        headers = scope.get("headers", ())
        if len(headers) > self.max_header_count:
            return await _reject(send, 431, "request_header_fields_too_large",
                                 f"request has {len(headers)} headers; the limit is {self.max_header_count}")
        header_bytes = sum(len(k) + len(v) for k, v in headers)
        if header_bytes > self.max_header_bytes:
            return await _reject(send, 431, "request_header_fields_too_large",
                                 f"request headers total {header_bytes} bytes; the limit is {self.max_header_bytes}")

        length = chunked = None
        for k, v in headers:
            if k == b"content-length":
                length = v
            elif k == b"transfer-encoding":
                chunked = v
        if length is not None:
            try:
                declared = int(length)
                if declared < 0:
                    raise ValueError
            except ValueError:
                return await _reject(send, 400, "bad_request", "Content-Length is not a non-negative integer")
            if declared > self.max_body_bytes:
                return await _reject(send, 413, "payload_too_large",
                                     f"request body is {declared} bytes; the limit is {self.max_body_bytes}")
            if declared == 0:
                return await self.app(scope, receive, send)
        elif chunked is None:
            return await self.app(scope, receive, send)  # no body (the usual GET)

        # A body of unknown or declared size: read it up to the cap, then replay it to the app.
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # client went away before sending the body
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return await _reject(send, 413, "payload_too_large",
                                     f"request body exceeds the limit of {self.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # afterwards only http.disconnect can come

        return await self.app(scope, replay, send)


async def _reject(send, status: int, error: str, message: str) -> None:
    body = orjson.dumps({"error": error, "message": message})
    # Connection: close, because an unread body would otherwise be parsed as the next request.
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
