"""gen: scenarios (small sizes): counts, stale fraction, forged CSRs, steady state, CLI."""

import base64
import collections
import json

import pytest

from apisim import csrgen
from apisim.controllers import SA_TOKEN, local_sim
from apisim.generate import parse_params
from apisim.pki import b64url_decode
from apisim.scenario import load_scenario
from apisim.testing import SimProcess

CSR = "certificates.k8s.io/certificatesigningrequests"


def test_parse_params():
    p = parse_params("namespaces=4,pods=20,stale=0.25")
    assert (p["namespaces"], p["pods"], p["stale"], p["secrets"]) == (4, 20, 0.25, 8)
    with pytest.raises(ValueError):
        parse_params("bogus=1")


def test_generated_cluster_contents_and_steady_state():
    sim = local_sim(start=False)
    summary = load_scenario(sim, "gen:namespaces=6,pods=53,secrets=40,stale=0.25,nodes=4,csrs=10,forged=0.3,seed=3")
    st = sim.store
    app_ns = [n for n in st.list("namespaces") if n["metadata"]["name"].startswith("ns-")]
    assert len(app_ns) == 6
    pods = [p for p in st.list("pods") if p["metadata"]["namespace"].startswith("ns-")]
    assert len(pods) == 53 and all(p["status"]["phase"] == "Running" for p in pods)
    assert len(st.list("nodes")) == 4
    tokens = [s for s in st.list("secrets") if s["type"] == SA_TOKEN]
    assert len(tokens) == 40
    kids = collections.Counter(json.loads(b64url_decode(base64.b64decode(s["data"]["token"]).decode().split(".")[0]))
                               ["kid"] for s in tokens)
    assert kids[sim.pki.old_sa_key().kid] == 10 and kids[sim.pki.current_sa_key.kid] == 30
    assert summary["staleTokenSecrets"] == 10
    # the pods predate the rebuild (the new CA's notBefore): kubemend's pods step restarts them
    import calendar
    import subprocess
    import time
    out = subprocess.run(["openssl", "x509", "-noout", "-startdate"], input=sim.pki.ca_cert_pem,
                         capture_output=True, text=True, check=True).stdout
    rebuilt = calendar.timegm(time.strptime(out.strip().split("=", 1)[1].replace(" GMT", ""), "%b %d %H:%M:%S %Y"))
    assert all(calendar.timegm(time.strptime(p["metadata"]["creationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")) < rebuilt
               for p in pods)
    assert st.creation_offset == 0.0  # what is created while serving is not backdated
    csrs = st.list(CSR)
    assert len(csrs) == 10 and len(summary["forgedCsrs"]) == 3
    for c in csrs:
        info = csrgen.parse_request_b64(c["spec"]["request"])
        assert len(info["ips"]) == (2 if c["metadata"]["name"] in summary["forgedCsrs"] else 1)
    rv = st.current_rv()
    sim.controllers.start()
    try:
        sim.controllers.wait_idle()
        assert sim.controllers.wait_idle(5)
        assert st.current_rv() == rv  # steady state: no controller storm
    finally:
        sim.controllers.stop()


def test_gen_scenario_via_cli_and_kubectl():
    with SimProcess(scenario="gen:namespaces=3,pods=12,secrets=6,nodes=2,csrs=2",
                    extra_args=["--sa-key-type", "ec"]) as s:
        out = s.kubectl("get", "pods", "-A", "-l", "pod-template-hash", "-o", "name").stdout.split()
        assert len(out) == 12
        assert "apisim: generated" in (s.stderr() if callable(s.stderr) else s.stderr)
