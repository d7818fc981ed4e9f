"""A stand-in for the Resend API on a loopback port that records every request.

It answers like Resend: ``POST /emails`` returns ``{"id": ...}``, and a
repeated ``Idempotency-Key`` returns the first id without a second mail.
Tell it what to answer next with `reply`.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    deliver: bool = False
    """Deliver the mail anyway (the answer is lost, not the mail)."""


class RecordingResendServer:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.delivered: list[dict[str, Any]] = []
        self._ids: dict[str, str] = {}
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def reply(self, *replies: Reply) -> None:
        """Answer the next requests with these, then with success again."""
        self._replies.extend(replies)

    def start(self) -> RecordingResendServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _deliver(self, key: str | None, body: Any) -> str:
        if key is not None and key in self._ids:
            return self._ids[key]
        email_id = str(uuid.uuid4())
        self.delivered.append({"id": email_id, **body})
        if key is not None:
            self._ids[key] = email_id
        return email_id

    def _handle(self, request: BaseHTTPRequestHandler) -> tuple[Reply, bytes]:
        length = int(request.headers.get("Content-Length") or 0)
        raw = request.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        headers = {k.lower(): v for k, v in request.headers.items()}
        key = headers.get("idempotency-key")
        with self._lock:
            self.requests.append(Recorded(request.command, request.path, headers, body))
            planned = self._replies.popleft() if self._replies else None
            if planned is None or planned.deliver:
                email_id = self._deliver(key, body)
            if planned is None:
                planned = Reply(200, {"id": email_id})
        if planned.body is None:
            return planned, b"upstream unavailable"
        return planned, json.dumps(planned.body).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                reply, payload = server._handle(self)
                self.send_response(reply.status)
                json_body = reply.body is not None
                self.send_header("Content-Type", "application/json" if json_body else "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
