"""A quiet JSON request handler base shared by the test servers (Argo stub, Kubernetes API stub)."""

import json
from http.server import BaseHTTPRequestHandler
from typing import Any


class JsonHandler(BaseHTTPRequestHandler):
    """Replies with JSON bodies and keeps the test output free of access logs."""

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
