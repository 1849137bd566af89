"""operator/serve/http through tests/tools/kmhttp: /healthz, /readyz, /metrics, 404/405, stop.

kmhttp binds 127.0.0.1 on a kernel-chosen port (port 0) and prints it; readiness follows a file.
"""
import http.client
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request

import pytest

TOOLS = os.environ.get("KUBEMEND_TOOLS") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "tools")
KMHTTP = os.path.join(TOOLS, "kmhttp")


class Server:
    def __init__(self, *args):
        self.proc = subprocess.Popen([KMHTTP, *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline().decode()
        m = re.fullmatch(r"port=(\d+)\n", line)
        if not m:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=10)
            raise AssertionError(f"kmhttp did not start: {line!r} {err!r}")
        self.port = int(m.group(1))

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path, method="GET"):
        """Returns (status, content-type, body text) for any status."""
        req = urllib.request.Request(self.url(path), method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.headers.get("Content-Type"), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get("Content-Type"), e.read().decode()

    def stop(self):
        """Closes stdin (the tool's stop signal) and returns (exit code, stderr)."""
        try:  # communicate() closes stdin
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            raise
        return self.proc.returncode, err.decode()


@pytest.fixture
def server_factory():
    started = []

    def start(*args):
        s = Server(*args)
        started.append(s)
        return s

    yield start
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.communicate()


def metric_value(text, sample):
    """The value of the exposition line starting with `sample ` (None when absent)."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split(" ")[-1])
    return None


def test_healthz_readyz_toggle(server_factory, tmp_path):
    flag = tmp_path / "ready"
    sick = tmp_path / "sick"
    s = server_factory("--ready-file", str(flag), "--unhealthy-file", str(sick))

    assert s.get("/healthz") == (200, "text/plain; charset=utf-8", "ok")
    code, _, body = s.get("/readyz")
    assert code == 503
    assert body == f"not ready: waiting for {flag}\n"

    flag.touch()
    assert s.get("/readyz")[:3:2] == (200, "ok")
    assert s.get("/readyz?verbose=1")[0] == 200  # query strings are ignored

    flag.unlink()
    assert s.get("/readyz")[0] == 503

    sick.touch()
    code, _, body = s.get("/healthz")
    assert (code, body) == (503, f"unhealthy: {sick} exists\n")
    sick.unlink()
    assert s.get("/healthz")[0] == 200

    code, err = s.stop()
    assert code == 0
    assert "kmhttp: stopped" in err


def test_readyz_without_callback_config_is_not_ready(server_factory):
    s = server_factory()  # no --ready-file: the tool's callback reports it
    code, _, body = s.get("/readyz")
    assert code == 503 and body.startswith("not ready: ")


def test_metrics_exposition(server_factory):
    s = server_factory()
    code, ctype, body = s.get("/metrics")
    assert code == 200
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    for fam, typ in [("kubemend_reconcile_total", "counter"),
                     ("kubemend_reconcile_errors_total", "counter"),
                     ("kubemend_reconcile_duration_seconds", "histogram"),
                     ("kubemend_workqueue_depth", "gauge"),
                     ("kubemend_workqueue_retries_total", "counter"),
                     ("kubemend_api_requests_total", "counter"),
                     ("kubemend_api_request_duration_seconds", "histogram"),
                     ("kubemend_watch_restarts_total", "counter"),
                     ("kubemend_step_objects_total", "counter"),
                     ("kubemend_leader", "gauge")]:
        assert f"# TYPE {fam} {typ}\n" in body, fam
        assert f"# HELP {fam} " in body, fam
    assert metric_value(body, "kubemend_leader") == 1
    assert metric_value(body, 'kubemend_api_requests_total{verb="get",code="200"}') == 1
    assert metric_value(
        body, 'kubemend_api_request_duration_seconds_bucket{verb="get",le="+Inf"}') == 1
    # every non-comment line is `name[{labels}] value`
    sample = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
                        r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*\})? \S+$')
    for line in body.splitlines():
        assert line.startswith("# ") or sample.match(line), line
    assert body.endswith("\n")

    # checks are counted, so metrics change between scrapes
    before = metric_value(body, 'kubemend_reconcile_total{controller="kmhttp",result="check"}')
    s.get("/healthz")
    s.get("/readyz")
    after = metric_value(s.get("/metrics")[2],
                         'kubemend_reconcile_total{controller="kmhttp",result="check"}')
    assert after == (before or 0) + 2


def test_large_metrics_body_is_complete(server_factory):
    s = server_factory("--series", "400")
    code, _, body = s.get("/metrics")
    assert code == 200
    assert len(body) > 4 * 4096  # several writeable chunks
    for i in (0, 1, 199, 399):
        assert metric_value(
            body, f'kubemend_step_objects_total{{step="bulk",counter="c{i:04d}"}}') == i
    lines = [l for l in body.splitlines() if l.startswith('kubemend_step_objects_total{step="bulk"')]
    assert len(lines) == 400
    assert lines == sorted(lines, key=lambda l: l.split('counter="')[1])


def test_not_found_and_method_not_allowed(server_factory):
    s = server_factory()
    for path in ("/", "/metricsx", "/healthz/extra", "/debug/pprof"):
        code, _, body = s.get(path)
        assert (code, body) == (404, "404 page not found\n"), path
    code, _, body = s.get("/metrics", method="POST")
    assert (code, body) == (405, "method not allowed\n")
    code, _, _ = s.get("/readyz", method="DELETE")
    assert code == 405


def test_no_metrics_registry_gives_404(server_factory):
    s = server_factory("--no-metrics")
    assert s.get("/metrics")[0] == 404
    assert s.get("/healthz")[0] == 200


def test_keep_alive_serves_several_requests(server_factory, tmp_path):
    s = server_factory("--series", "200")
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    try:
        for path, want in [("/healthz", 200), ("/metrics", 200), ("/nope", 404),
                           ("/metrics", 200), ("/readyz", 503)]:
            conn.request("GET", path)
            r = conn.getresponse()
            body = r.read()
            assert r.status == want, path
            assert int(r.getheader("Content-Length")) == len(body)
    finally:
        conn.close()


def test_fixed_port_and_conflict(server_factory):
    a = server_factory()
    # a second server on the same port must fail cleanly, not hang
    p = subprocess.run([KMHTTP, "--port", str(a.port)], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=20)
    assert p.returncode == 1
    assert b"cannot listen" in p.stderr
    assert a.get("/healthz")[0] == 200


def test_sigterm_stops_cleanly(server_factory):
    s = server_factory()
    assert s.get("/healthz")[0] == 200
    s.proc.send_signal(signal.SIGTERM)
    _, err = s.proc.communicate(timeout=20)
    assert s.proc.returncode == 0
    assert b"kmhttp: stopped" in err
