"""The operator's probes tell the truth: /healthz and /readyz under deploy/'s RBAC, and after a PKI
rebuild (its own service-account token now rejected) /healthz fails with the reason, so the kubelet
restarts the pod with a fresh token; /metrics counts the 401s.  1,500 idle connections to the health port
(more than the operator's descriptor limit when it is 1,024) neither silence the probes nor take the
descriptors the API client needs (issue 16 item 8)."""

import os
import re
import resource
import socket

import kmop
from kmop import SimProcess


get = kmop.http_get


def health_port(op):
    # one server answers /healthz, /readyz and /metrics when both bind addresses are equal
    m = re.search(r'http server listening" flag=--\S+ port=(\d+)', op.text())
    return int(m.group(1)) if m else None


def nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise AssertionError("no open-files limit")


def flood_keeps_probes_and_descriptors(op, port, n=1500):
    """n idle connections to the health port: /healthz and /readyz keep answering, the operator holds at most a
    quarter of its descriptor limit (the server's cap is an eighth)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, n + 512)), hard))
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.settimeout(0.5)
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        assert len(socks) > 200, len(socks)
        assert get(port, "/healthz") == (200, "ok")
        assert get(port, "/readyz")[0] == 200
        fds = len(os.listdir("/proc/%d/fd" % op.proc.pid))
        assert fds <= nofile(op.proc.pid) // 4, (fds, nofile(op.proc.pid))
    finally:
        for s in socks:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_probes_and_credentials_rejected_after_pki_rebuild(tmp_path):
    with SimProcess() as sim:
        kmop.install(sim)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))  # the operator's, as in a pod
        try:
            op = kmop.Operator(kmop.sa_kubeconfig(sim), str(tmp_path / "op.log"))
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        try:
            kmop.wait_for(lambda: health_port(op), what="health server")
            port = health_port(op)
            assert get(port, "/healthz") == (200, "ok")
            kmop.wait_for(lambda: get(port, "/readyz")[0] == 200, what="ready")
            assert get(port, "/nope")[0] == 404
            flood_keeps_probes_and_descriptors(op, port)

            # the control plane gets a new service-account key: our legacy token is stale now
            code, _ = sim.sim("POST", "/_sim/pki-rebuild")
            assert code == 200
            kmop.wait_for(lambda: get(port, "/healthz")[0] == 503, timeout=30, what="liveness failure")
            code, body = get(port, "/healthz")
            assert "credentials rejected" in body
            loud = [l for l in op.text().splitlines()
                    if "level=error" in l and "after a PKI rebuild restart the operator's pod" in l]
            assert len(loud) == 1, loud  # said clearly, once (later failures only at debug level)
        finally:
            op.stop()


def _gauge(port, name):
    code, body = get(port, "/metrics")
    for line in body.splitlines() if code == 200 else []:
        if line.startswith(name + " "):
            return float(line.split(" ")[-1])
    return None


def test_metrics_show_the_adaptive_rate_and_its_backoff_on_429(tmp_path):
    """Issue 14: no fixed 50 qps by default — the client's rate starts at 200 qps and adapts; a 429 with
    Retry-After from the server halves it; /metrics shows the rate and the requests in flight; --qps caps it."""
    with SimProcess() as sim:
        kmop.install(sim)
        kubeconfig = kmop.sa_kubeconfig(sim)
        op = kmop.Operator(kubeconfig, str(tmp_path / "op.log"))
        try:
            kmop.wait_for(lambda: health_port(op), what="health server")
            port = health_port(op)
            kmop.wait_for(lambda: _gauge(port, "kubemend_client_rate_limit_qps") is not None, what="rate gauge")
            assert _gauge(port, "kubemend_client_rate_limit_qps") == 200
            assert _gauge(port, "kubemend_api_requests_in_flight") >= 0
            kmop.wait_for(lambda: op.leading(), what="leader")
            # every Lease renewal answered 429: the rate halves (the lease keeps retrying)
            sim.sim("POST", "/_sim/faults", {"rules": [{"resource": "coordination.k8s.io/leases", "code": 429, "retryAfter": 1}]})
            kmop.wait_for(lambda: (_gauge(port, "kubemend_client_rate_limit_qps") or 200) <= 100, timeout=60,
                          what="rate halved after 429s")
            sim.sim("POST", "/_sim/faults", {"rules": []})
        finally:
            op.stop()
        capped = kmop.Operator(kubeconfig, str(tmp_path / "op2.log"), extra=["--qps", "30"])
        try:
            kmop.wait_for(lambda: health_port(capped), what="health server")
            port = health_port(capped)
            kmop.wait_for(lambda: _gauge(port, "kubemend_client_rate_limit_qps") is not None, what="rate gauge")
            assert _gauge(port, "kubemend_client_rate_limit_qps") == 30
        finally:
            capped.stop()
