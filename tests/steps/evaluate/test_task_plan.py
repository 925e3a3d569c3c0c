"""The evaluate step's task registry: offline detection through HF_ENDPOINT and proxies, names and variants."""

import select
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from steps.common.errors import StepError
from steps.evaluate import task_plan
from tests.tls_certs import self_signed

HUB = "hub.example.test"  # .test never resolves: only a proxy can reach it
PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY",
              "all_proxy")


@pytest.fixture(autouse=True)
def online_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT", *PROXY_VARS):
        monkeypatch.delenv(var, raising=False)


class Proxy:
    """A forward proxy on 127.0.0.1 standing in for the Hub: plain HTTP requests (absolute URIs) and CONNECT
    tunnels, which it terminates with TLS for HUB itself; it answers every request 401 (any status = reachable)."""

    def __init__(self, tls: tuple[str, str]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(*tls)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    @staticmethod
    def _head(conn: socket.socket) -> str:
        data = b""
        while b"\r\n\r\n" not in data and select.select([conn], [], [], 5)[0]:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.decode("latin-1")

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            first = self._head(conn).split("\r\n", 1)[0]
            self.lines.append(first)
            if first.startswith("CONNECT "):
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                with self.ctx.wrap_socket(conn, server_side=True) as tls:
                    self.lines.append(self._head(tls).split("\r\n", 1)[0])
                    tls.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            else:
                conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture()
def proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proxy]:
    cert, key = self_signed(tmp_path, dns=HUB, common_name="hub")
    monkeypatch.setenv("SSL_CERT_FILE", cert)  # the client trusts the proxy's certificate for HUB
    p = Proxy((cert, key))
    yield p
    p.close()


def test_offline_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert task_plan.hub_offline() is True


def test_hf_endpoint_is_probed_not_huggingface_co(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{proxy.port}")  # a mirror: answers, so not offline
    assert task_plan.hub_offline() is False
    assert proxy.lines == ["HEAD /api/models?limit=1 HTTP/1.1"]
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    assert task_plan.hub_offline(timeout=2) is True


def test_a_proxied_cluster_is_not_offline(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    """HUB cannot be resolved here; through HTTPS_PROXY it answers, so the Hub counts as reachable."""
    monkeypatch.setenv("HF_ENDPOINT", f"https://{HUB}")
    assert task_plan.hub_offline(timeout=2) is True  # no proxy: unreachable
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{proxy.port}")
    assert task_plan.hub_offline() is False
    assert [line.rsplit(" ", 1)[0] for line in proxy.lines] == [f"CONNECT {HUB}:443", "HEAD /api/models?limit=1"]
    monkeypatch.setenv("NO_PROXY", HUB)  # exempted from the proxy: direct again, unreachable
    assert task_plan.hub_offline(timeout=2) is True


def test_plain_http_endpoint_goes_through_http_proxy(proxy: Proxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", f"http://{HUB}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    assert task_plan.hub_offline() is False
    assert proxy.lines == [f"HEAD http://{HUB}/api/models?limit=1 HTTP/1.1"]


def test_offline_plan_names_the_variants_that_differ() -> None:
    plan = task_plan.plan_tasks(["arc_easy", "hellaswag", "gsm8k"], offline=True)
    assert plan.local and plan.names == ["arc_easy@validation", "hellaswag", "gsm8k@fewshot-from-test"]
    assert len(plan.notes) == 2 and "arc_easy runs offline as the local variant arc_easy@validation" in plan.notes[0]
    with pytest.raises(StepError, match=r"\['arc_eazy'\] have no offline variant"):
        task_plan.plan_tasks(["arc_eazy"], offline=True)


def test_online_plan_checks_lm_evals_own_registry() -> None:
    plan = task_plan.plan_tasks(["arc_easy"], offline=False)
    assert not plan.local and plan.names == ["arc_easy"] and plan.notes == []
    with pytest.raises(StepError, match=r"unknown lm-eval task\(s\) \['arc_eazy'\]"):
        task_plan.plan_tasks(["arc_easy", "arc_eazy"], offline=False)
