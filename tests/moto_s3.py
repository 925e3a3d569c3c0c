"""An S3 API for tests: moto in server mode on 127.0.0.1 (a free port), stopped on exit."""

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def moto_server(reset: bool = False) -> Iterator[str]:
    """Start moto on a free loopback port and yield its endpoint URL. ``reset``: clear moto's state first (it is
    per process, not per server, so a server started after another sees the other's buckets)."""
    import requests
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        if reset:
            requests.post(f"{endpoint}/moto-api/reset", timeout=10)
        yield endpoint
    finally:
        server.stop()
