"""``bridge.http.LeanClient``: the X poll's transport keeps connections alive, safely (issue 18)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bridge.http import ConnectionFailed, LeanClient, NoAnswer, TooLarge


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    mode = "keep"  # keep: HTTP/1.1 keep-alive; hang-up: answer, then close the socket without saying so; garbage
    closed = threading.Event()
    ports: list[int] = []


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.server.ports.append(self.client_address[1])
        if self.server.mode == "garbage":
            self.wfile.write(b"this is not HTTP\r\n\r\n")
            self.wfile.flush()
            self.close_connection = True
            return
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if self.server.mode == "hang-up":  # as a server's idle timeout does between two polls
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            self.server.closed.set()

    def log_message(self, format: str, *args: object) -> None:
        return


def _serving(wrap: Callable[[socket.socket], socket.socket] | None = None) -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.ports = []
    httpd.closed = threading.Event()
    if wrap is not None:
        httpd.socket = wrap(httpd.socket)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server() -> Iterator[_Server]:
    yield from _serving()


def client(server: _Server, timeout: float = 5.0) -> LeanClient:
    return LeanClient(f"http://127.0.0.1:{server.server_address[1]}", timeout=timeout)


def test_requests_share_one_kept_alive_connection(server: _Server) -> None:
    c = client(server)
    answers = [c.request("GET", "/2/users/1/tweets", params={"since_id": str(i)}, headers={}).text for i in range(3)]
    assert answers == [f"/2/users/1/tweets?since_id={i}" for i in range(3)]
    assert len(set(server.ports)) == 1
    c.close()


def test_a_kept_connection_the_server_closed_meanwhile_is_replaced_not_failed(server: _Server) -> None:
    server.mode = "hang-up"
    c = client(server)
    assert c.request("GET", "/a", headers={}).status_code == 200
    assert server.closed.wait(5)
    assert c.request("GET", "/b", headers={}).text == "/b"  # a new connection, no failure
    assert len(set(server.ports)) == 2
    c.close()


def test_a_connection_that_failed_is_never_used_again(server: _Server) -> None:
    c = client(server)
    c.request("GET", "/a", headers={})
    server.mode = "garbage"
    with pytest.raises(ConnectionFailed):
        c.request("GET", "/b", headers={})
    server.mode = "keep"
    assert c.request("GET", "/c", headers={}).text == "/c"
    assert len(set(server.ports)) == 2
    c.close()


def test_no_answer_within_the_timeout_is_told_apart_from_a_refused_connection() -> None:
    with socket.socket() as listening:  # accepts connections (the backlog) and never answers
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        with pytest.raises(NoAnswer):
            LeanClient(f"http://127.0.0.1:{listening.getsockname()[1]}", timeout=0.2).request("GET", "/", headers={})
        port = listening.getsockname()[1]
    with pytest.raises(ConnectionFailed, match="NewConnectionError"):
        LeanClient(f"http://127.0.0.1:{port}", timeout=0.2).request("GET", "/", headers={})


def test_threads_sharing_a_client_each_get_their_own_answer(server: _Server) -> None:
    c = client(server)

    def ask(i: int) -> str:
        return c.request("GET", f"/n/{i}", headers={}).text

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(ask, range(200))) == [f"/n/{i}" for i in range(200)]
    assert len(set(server.ports)) <= 8  # connections are kept and reused, never more than the threads
    c.close()


def test_an_answer_over_the_size_limit_is_not_read_and_its_connection_not_reused(server: _Server) -> None:
    c = LeanClient(f"http://127.0.0.1:{server.server_address[1]}", timeout=5.0, max_bytes=10)
    assert c.request("GET", "/short", headers={}).text == "/short"
    with pytest.raises(TooLarge, match="larger than 10 bytes"):
        c.request("GET", "/a-path-of-more-than-ten-bytes", headers={})
    assert c.request("GET", "/again", headers={}).text == "/again"
    assert len(set(server.ports)) == 2
    c.close()


TLS = Path(__file__).parent / "data" / "tls"


@pytest.fixture
def tls_server() -> Iterator[_Server]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS / "server.pem", TLS / "server.key")
    yield from _serving(lambda sock: context.wrap_socket(sock, server_side=True))


def test_tls_is_verified_against_the_ca_bundle_the_environment_names(
    tls_server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"https://127.0.0.1:{tls_server.server_address[1]}"
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(TLS / "ca.pem"))
    trusted = LeanClient(url, timeout=5.0)
    assert [trusted.request("GET", f"/{n}", headers={}).text for n in range(2)] == ["/0", "/1"]
    assert len(set(tls_server.ports)) == 1  # kept alive over TLS too
    trusted.close()
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    with pytest.raises(ConnectionFailed):  # the default bundle does not know the test CA
        LeanClient(url, timeout=5.0).request("GET", "/", headers={})
