"""Real notification receivers on 127.0.0.1: an SMTP server (aiosmtpd) and an HTTP endpoint for
Apprise's json:// targets, each recording what it received."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Mailbox:
    port: int
    messages: list[EmailMessage] = field(default_factory=list)

    def url(self, to: str = "ops@example.com") -> str:
        return f"mailto://127.0.0.1:{self.port}?from=fastflow@example.com&to={to}"

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

    def bodies(self) -> list[str]:
        out = []
        for message in self.messages:
            part = message.get_body(preferencelist=("plain",))
            out.append(part.get_content().replace("\r\n", "\n") if part is not None else "")
        return out


@dataclass
class Webhook:
    port: int
    posts: list[dict] = field(default_factory=list)

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"


@pytest.fixture(name="mailbox")
def mailbox_fixture() -> Iterator[Mailbox]:
    box = Mailbox(port=free_port())
    controller = Controller(box, hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def _serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, threading.Thread]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture(name="webhook")
def webhook_fixture() -> Iterator[Webhook]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server, _ = _serve(Handler)
    hook = Webhook(port=server.server_port, posts=received)
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(name="hanging_endpoint")
def hanging_endpoint_fixture() -> Iterator[str]:
    """A json:// target that accepts the connection and never answers."""
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            release.wait(60)

        def log_message(self, *args: object) -> None:
            pass

    server, _ = _serve(Handler)
    try:
        yield f"json://127.0.0.1:{server.server_port}/slow"
    finally:
        release.set()
        server.shutdown()
        server.server_close()
