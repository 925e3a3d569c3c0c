"""Loopback stand-ins for remote data: an HTTP file server with Range, ETag and If-Range that can cut
connections mid-body, and a TCP proxy that cuts connections after N bytes (in front of moto, for S3).

Used by the tests and by bench/dataset_bench.py (``python -m tests.steps.dataset.servers http ROOT PORT``).
"""

import contextlib
import http.server
import os
import re
import socket
import sys
import threading
import time
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class RangeServer(http.server.ThreadingHTTPServer):
    """Serves files under ``root``; ``drops`` holds byte counts: each GET takes the next one and sends only that
    many body bytes before cutting the connection (a dropped connection mid-object)."""

    daemon_threads = True

    def __init__(self, root: Path, port: int = 0, drops: list[int] | None = None, ranges: bool = True,
                 stall_after: int | None = None, body_delay_s: float = 0.0) -> None:
        self.root = Path(root)
        self.body_delay_s = body_delay_s  # wait this long between the headers and the body (a slow first byte)
        self.drops = list(drops or [])
        self.stall_after = stall_after  # send this many body bytes, then hang (a stalled network)
        self.stalling = threading.Event()  # set once a response stalls
        self.stalled = threading.Event()  # set to let stalled responses end
        self.ranges = ranges  # False: ignore Range like a server that cannot do it
        self.log: list[tuple[str, str | None, int]] = []  # (path, Range header, status)
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def next_drop(self) -> int | None:
        with self.lock:
            return self.drops.pop(0) if self.drops else None

    def start(self) -> "RangeServer":
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RangeServer

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.server.root / self.path.split("?", 1)[0].lstrip("/")
        if not path.is_file():
            self._status(404)
            return
        st = path.stat()
        etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
        start, end, status = 0, st.st_size - 1, 200
        want = self.headers.get("Range")
        match = _RANGE.match(want or "")
        if_range = self.headers.get("If-Range")
        if match and self.server.ranges and (if_range is None or if_range == etag):
            start = int(match.group(1))
            end = min(int(match.group(2)), end) if match.group(2) else end
            if start > end:
                self._status(416)
                return
            status = 206
        with self.server.lock:
            self.server.log.append((self.path, want, status))
        self.send_response(status)
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("ETag", etag)
        self.send_header("Accept-Ranges", "bytes" if self.server.ranges else "none")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{st.st_size}")
        self.end_headers()
        if self.server.body_delay_s:
            self.wfile.flush()
            time.sleep(self.server.body_delay_s)
        count = end - start + 1
        with open(path, "rb") as fh:
            drop = self.server.next_drop()
            if self.server.stall_after is not None:
                drop = self.server.stall_after
            try:
                self.connection.sendfile(fh, offset=start, count=count if drop is None else min(drop, count))
            except OSError:
                self.close_connection = True
                return
        if self.server.stall_after is not None:
            self.server.stalling.set()
            self.server.stalled.wait(60)
        if drop is not None and drop < count:
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    def _status(self, code: int) -> None:
        with self.server.lock:
            self.server.log.append((self.path, self.headers.get("Range"), code))
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()


class CuttingProxy:
    """A TCP proxy to ``upstream``: the k-th connection the server answers on (0-based) is cut after ``cuts[k]``
    bytes from the server (None: not cut)."""

    def __init__(self, upstream: tuple[str, int], cuts: list[int | None], port: int = 0) -> None:
        self.upstream = upstream
        self.cuts = list(cuts)
        self.cut = 0  # connections cut so far
        self.sock = socket.create_server(("127.0.0.1", port))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pipe, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, cutting: bool) -> None:
        sent, limit, first = 0, None, True
        try:
            while data := src.recv(1 << 16):
                if cutting and first:  # a connection takes the next cut when the server first answers on it
                    first = False
                    with self.lock:
                        limit = self.cuts.pop(0) if self.cuts else None
                if limit is not None and sent + len(data) >= limit:
                    dst.sendall(data[: limit - sent])
                    with self.lock:
                        self.cut += 1
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.sock.close()


def main() -> None:
    """``servers http ROOT PORT [DROP...]``: serve ROOT with Range support; ``servers proxy UPSTREAM_PORT PORT
    [CUT...]``: a cutting proxy (``-`` = do not cut that connection). Both run until killed."""
    _, kind, first, port, *rest = sys.argv
    if kind == "http":
        server = RangeServer(Path(first), int(port), [int(d) for d in rest])
        print(f"serving {os.path.abspath(first)} at {server.url}", flush=True)
        server.serve_forever()
    elif kind == "proxy":
        proxy = CuttingProxy(("127.0.0.1", int(first)), [None if c == "-" else int(c) for c in rest], int(port))
        print(f"proxy to :{first} at {proxy.url}", flush=True)
        threading.Event().wait()
    else:
        raise SystemExit(f"unknown server kind {kind!r}: use http or proxy")


if __name__ == "__main__":
    main()
