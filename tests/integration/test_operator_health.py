"""The operator's probes tell the truth: /healthz and /readyz under deploy/'s RBAC, and after a PKI
rebuild (its own service-account token now rejected) /healthz fails with the reason, so the kubelet
restarts the pod with a fresh token; /metrics counts the 401s."""

import re

import kmop
from kmop import SimProcess


get = kmop.http_get


def health_port(op):
    # one server answers /healthz, /readyz and /metrics when both bind addresses are equal
    m = re.search(r'http server listening" flag=--\S+ port=(\d+)', op.text())
    return int(m.group(1)) if m else None


def test_probes_and_credentials_rejected_after_pki_rebuild(tmp_path):
    with SimProcess() as sim:
        kmop.install(sim)
        op = kmop.Operator(kmop.sa_kubeconfig(sim), str(tmp_path / "op.log"))
        try:
            kmop.wait_for(lambda: health_port(op), what="health server")
            port = health_port(op)
            assert get(port, "/healthz") == (200, "ok")
            kmop.wait_for(lambda: get(port, "/readyz")[0] == 200, what="ready")
            assert get(port, "/nope")[0] == 404

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
