"""Exploratory: `kubemend run --once --kubeconfig admin.conf` against the seed on the real server (the pattern the
recovery suites will follow: install seed -> rebuild -> run -> check the end state on the server). Checks only
what the product promises today; the full recovery suites come later."""

import json
import os
import subprocess

import pytest
from realk8s import REPO_ROOT, seed

from helpers import extauth, pems

KUBEMEND = os.environ.get("KUBEMEND_BIN") or os.path.join(REPO_ROOT, "build", "kubemend")


@pytest.fixture(scope="module")
def healed(control_plane, kubelet):
    if not os.access(KUBEMEND, os.X_OK):
        pytest.skip("no kubemend binary at %s (run `make`)" % KUBEMEND)
    desc = seed.install(control_plane, kubelet)
    seed.disaster(control_plane, kubelet, desc)
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    proc = subprocess.run([KUBEMEND, "run", "--once", "--kubeconfig", control_plane.admin_kubeconfig, "-o", "json"],
                          capture_output=True, text=True, timeout=600, env=env)
    with open(os.path.join(control_plane.workdir, "kubemend.log"), "w") as f:
        f.write(proc.stderr)
    return desc, proc


def test_run_once_heals_the_real_cluster(control_plane, healed):
    desc, proc = healed
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads(proc.stdout)
    assert status["phase"] == "Succeeded"
    cp = control_plane
    states = seed.token_secret_states(cp)
    for ref, info in desc["tokenSecrets"].items():
        if info["deleting"] or info["expect"] == "malformed" or info["missingUidAnnotation"]:
            continue  # not promised (yet): see the harness report
        assert states[ref]["authenticated"], (ref, states[ref])
    for ref, uid in desc["userCreatedTokenSecrets"].items():
        assert states[ref]["uid"] == uid, ref  # regenerated in place, never deleted
    data = extauth(cp)
    assert pems(data["client-ca-file"]) == [desc["ca"]["new"]]
    assert pems(data["requestheader-client-ca-file"]) == [desc["ca"]["newFrontProxy"]]
    csrs = {x["metadata"]["name"]: x for x in cp.client().get(
        "/apis/certificates.k8s.io/v1/certificatesigningrequests")["items"]}
    for name in desc["csrs"]["valid"]:
        assert csrs[name]["status"].get("certificate"), name  # issued by the real signer
    for name in desc["csrs"]["forged"]:
        conds = {c["type"] for c in (csrs[name].get("status") or {}).get("conditions") or []}
        assert "Approved" not in conds and "Denied" in conds, name
    for ref, uid in desc["ownerlessPods"].items():
        ns, name = ref.split("/")
        assert cp.client().get("/api/v1/namespaces/%s/pods/%s" % (ns, name))["metadata"]["uid"] == uid
    assert desc.builder.workloads_ready(), desc.builder.waiting_on
    for ref, p in desc["pods"].items():
        if p["owner"] and p["automount"] and p["serviceAccount"] not in (None, "default") and p["phase"] == "before":
            ns, name = ref.split("/")
            st, cur = cp.request("GET", "/api/v1/namespaces/%s/pods/%s" % (ns, name))
            assert st == 404 or cur["metadata"]["uid"] != p["uid"] or cur["metadata"].get("deletionTimestamp"), ref
