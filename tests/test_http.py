"""The core's synchronous HTTP client (urbanvis._http) against a scripted local server."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from urbanvis import _http
from urbanvis._errors import OfflineError, UrbanvisError

pytestmark = pytest.mark.network

KEY = "s3cret/KEY+42"


@pytest.fixture
def server():
    """A server answering a scripted list of (status, headers, body); records User-Agents."""
    script: list[tuple[int, dict[str, str], bytes]] = []
    agents: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server name)
            agents.append(self.headers.get("User-Agent", ""))
            status, headers, body = script.pop(0) if script else (200, {}, b"ok")
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.script, httpd.agents = script, agents
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/x?key={KEY}"
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture
def sleeps(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(_http.time, "sleep", slept.append)
    return slept


def test_busy_answers_are_retried_with_backoff_and_retry_after(server, sleeps):
    server.script += [(503, {}, b"busy"), (429, {"Retry-After": "90"}, b"slow down")]
    assert _http.get(server.url, secrets=(KEY,)) == b"ok"
    assert sleeps == [1.0, 30.0]  # 2**0, then Retry-After capped at 30 s
    assert server.agents == [_http.USER_AGENT] * 3
    assert _http.USER_AGENT.startswith("urbanvis/")


def test_a_status_error_is_one_line_with_its_code_and_no_secret(server, sleeps):
    server.script += [(404, {}, f"no such thing for key {KEY}\nsecond line".encode())]
    with pytest.raises(_http.HttpStatusError) as caught:
        _http.get(server.url, secrets=(KEY,))
    error = caught.value
    assert isinstance(error, OfflineError) and isinstance(error, UrbanvisError)
    assert error.code == 404 and sleeps == []  # a 404 is not retried
    assert KEY not in error.text and "***" in error.text
    assert str(error) == f"127.0.0.1:{server.server_address[1]} answered HTTP 404"

    server.script += [(500, {}, b"down")] * 3
    with pytest.raises(_http.HttpStatusError) as caught:
        _http.get(server.url, attempts=3)
    assert caught.value.code == 500 and sleeps == [1.0, 2.0]


def test_no_answer_is_an_unreachable_error_naming_the_host_only():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(_http.UnreachableError) as caught:
        _http.get(f"http://127.0.0.1:{port}/data?key={KEY}", secrets=(KEY,))
    message = str(caught.value)
    assert message.startswith(f"cannot reach 127.0.0.1:{port} (") and "\n" not in message
    assert KEY not in message and "/data" not in message and caught.value.reason


def test_host_of_hides_credentials_and_names_local_folders():
    assert _http.host_of("https://user:pw@example.org:8443/a?key=1") == "example.org:8443"
    assert _http.host_of("file:///tmp/tiger") == "a local folder"
