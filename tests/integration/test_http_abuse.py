"""operator/serve/http under abuse (issue 13 item 4, issue 16 item 8), on 127.0.0.1 through
tests/tools/kmhttp started with a small descriptor limit (RLIMIT_NOFILE 256, so "more connections
than descriptors" is cheap):

- many idle connections (more than the descriptor limit): /healthz keeps answering and the server
  holds at most its connection cap, leaving descriptors for the API client;
- slow clients (a request head trickling in, or never finished): /healthz keeps answering and the
  slow connection is closed after the request deadline;
- huge headers, POST without Content-Length followed by an endless body: answered (431 / 405) and
  closed, memory stays bounded (VmHWM), /healthz keeps answering.

Bounds checked: the server's descriptors (<= RLIMIT_NOFILE / 2) and its peak RSS (< 24 MiB).
The 3 s client timeouts are liveness checks (a server that answers only after idle connections
time out fails them), not performance goals.
"""
import http.client
import os
import re
import resource
import socket
import subprocess
import time

import pytest

TOOLS = os.environ.get("KUBEMEND_TOOLS") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "tools")
KMHTTP = os.path.join(TOOLS, "kmhttp")
NOFILE = 256
PROBE_TIMEOUT = 3.0  # a kubelet probe's default timeout is 1 s
RSS_MAX_KB = 24 * 1024


def _limit_fds():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen([KMHTTP, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=_limit_fds)
        line = self.proc.stdout.readline().decode()
        m = re.fullmatch(r"port=(\d+)\n", line)
        if not m:
            self.proc.kill()
            raise AssertionError(f"kmhttp did not start: {line!r}")
        self.port = int(m.group(1))

    def healthz(self):
        """GET /healthz on a fresh connection: (status, body); raises on timeout."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PROBE_TIMEOUT)
        try:
            c.request("GET", "/healthz")
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def hwm_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("no VmHWM")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def server():
    started = []

    def start(*args):
        s = Server(*args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def sockets():
    """Opened client sockets, closed at teardown (the test process may need more descriptors)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    opened = []
    yield opened
    for s in opened:
        s.close()
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def connect(port, sockets, n, first=b""):
    """Opens up to n connections (sending `first` on each); returns how many connected."""
    done = 0
    for _ in range(n):
        s = socket.socket()
        s.settimeout(0.5)
        try:
            s.connect(("127.0.0.1", port))
            if first:
                s.sendall(first)
        except OSError:
            s.close()
            continue
        sockets.append(s)
        done += 1
    return done


def closed_by_server(s, within):
    """True when the server closes s (EOF or reset) within `within` seconds."""
    s.settimeout(within)
    try:
        while True:
            data = s.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_more_idle_connections_than_descriptors(server, sockets):
    s = server()
    opened = connect(s.port, sockets, NOFILE + 300)
    assert opened > NOFILE // 2  # enough to exhaust the server without a cap
    for _ in range(5):
        assert s.healthz() == (200, "ok")
    assert s.fds() <= NOFILE // 2, "the connection cap leaves descriptors for the API client"


def test_slow_request_heads_do_not_block_healthz(server, sockets):
    s = server()
    # slowloris: request heads that never end, more of them than the connection cap
    connect(s.port, sockets, NOFILE, first=b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    for _ in range(5):
        assert s.healthz() == (200, "ok")
    assert s.fds() <= NOFILE // 2


def test_unfinished_request_is_closed_after_the_deadline(server, sockets):
    s = server()
    connect(s.port, sockets, 1, first=b"GET /healthz HTTP/1.1\r\n")
    slow = sockets[0]
    t0 = time.monotonic()
    for _ in range(20):  # a byte at a time keeps it busy but must not extend the deadline
        try:
            slow.sendall(b"X")
        except OSError:
            break
        time.sleep(0.5)
        if time.monotonic() - t0 > 12:
            break
    assert closed_by_server(slow, 15), "a request head trickling in is closed at its deadline"
    assert s.healthz() == (200, "ok")


def test_huge_headers_are_refused_with_bounded_memory(server, sockets):
    s = server()
    big = b"X-Junk: " + b"a" * (64 * 1024) + b"\r\n"
    for _ in range(20):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=PROBE_TIMEOUT)
        sockets.append(c)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(32):  # 2 MiB of header per connection
                c.sendall(big)
        except OSError:
            pass  # the server closed it: fine
        assert closed_by_server(c, 5)
    assert s.healthz() == (200, "ok")
    assert s.hwm_kb() < RSS_MAX_KB


def test_post_without_content_length_and_endless_body(server, sockets):
    s = server()
    c = socket.create_connection(("127.0.0.1", s.port), timeout=PROBE_TIMEOUT)
    sockets.append(c)
    c.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    answer = b""
    try:
        for _ in range(256):  # 16 MiB of body the server never asked for
            c.sendall(b"10000\r\n" + b"b" * 0x10000 + b"\r\n")
    except OSError:
        pass
    c.settimeout(5)
    try:
        while True:
            d = c.recv(65536)
            if not d:
                break
            answer += d
    except (ConnectionResetError, socket.timeout):
        pass
    assert answer.startswith(b"HTTP/1.1 405") or answer == b""
    # a POST without Content-Length and without a body: answered at once
    c2 = socket.create_connection(("127.0.0.1", s.port), timeout=PROBE_TIMEOUT)
    sockets.append(c2)
    c2.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c2.recv(65536).startswith(b"HTTP/1.1 405")
    assert s.healthz() == (200, "ok")
    assert s.hwm_kb() < RSS_MAX_KB


def test_reader_that_never_reads_metrics(server, sockets):
    s = server("--series", "500")
    # pipeline many /metrics requests and never read the answers
    for _ in range(20):
        c = socket.create_connection(("127.0.0.1", s.port), timeout=PROBE_TIMEOUT)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sockets.append(c)
        try:
            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
        except OSError:
            pass
    assert s.healthz() == (200, "ok")
    assert s.hwm_kb() < RSS_MAX_KB
