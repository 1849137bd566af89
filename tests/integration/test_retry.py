"""Transient faults never fail a recovery (issue 12 item 3, issue 16 item 4), in both modes: one
503 on each kind of write kubemend makes, and continue tokens that expire on every page (a
compacting etcd: the list restarts once, then falls back to one unpaginated list), still end
Succeeded with the exact end state.  A cluster of 620 token Secrets, so the token lists have
two pages of 500."""

import json
import time

import pytest

import kmop
from kmop import SimProcess

GEN = "gen:namespaces=4,pods=20,secrets=620,stale=0.1,nodes=2,csrs=4,seed=5"
STALE = 62  # the generator's stale token Secrets for GEN
WORKLOADS = 3  # Deployments with stale pods on a non-default ServiceAccount

CSR = "certificates.k8s.io/certificatesigningrequests"
CREC = "kubemend.io/clusterrecoveries"
# One 503 (count 1) on the first request of every kind of write the recovery makes.
ONE_503_EACH = [{"verb": v, "resource": r, "code": 503, "count": 1} for v, r in (
    ("patch", "secrets"),                                   # tokens: the guarded JSON patch
    ("create", "configmaps"),                               # extauth: the backup
    ("update", "configmaps"),                               # extauth: the guarded PUT
    ("update", CSR + "/approval"),                          # csr: approve / deny
    ("patch", "apps/deployments"),                          # pods: rollout restart
    ("update", CREC + "/status"),                           # operator: status
    ("patch", CREC),                                        # operator: finalizer
    ("update", CREC),
    ("create", "events"),
)]


def assert_exact(st, scanned=620):
    """The end state of GEN's recovery (as a fault-free run ends); the operator's own token Secret
    makes 621 in operator mode."""
    assert st["phase"] == "Succeeded", st
    conds = {c["type"]: c for c in st["conditions"]}
    for t in ("Succeeded", "TokensRegenerated", "ExtensionAuthCleaned", "CSRApprovalWindow", "PodsRestarted"):
        assert conds[t]["status"] == "True", conds[t]
    tok = st["tokens"]
    assert tok["scanned"] == scanned, tok
    assert tok["stale"] == tok["regenerated"] == tok["healed"] == STALE, tok
    assert tok["failed"] == 0 and tok["skipped"] == 0 and "continue" not in tok, tok
    assert conds["ExtensionAuthCleaned"]["reason"] == "Cleaned", conds["ExtensionAuthCleaned"]
    assert st["pods"]["restarted"] == WORKLOADS, st["pods"]


def assert_nothing_left(sim, scanned=620):
    """A dry run afterwards finds nothing stale: every token Secret holds a valid token."""
    cp = kmop.run(["run", "--once", "--dry-run", "--steps", "tokens", "-o", "json", "--kubeconfig",
                   sim.kubeconfig])
    assert cp.returncode == 0, cp.stderr[-2000:]
    tok = json.loads(cp.stdout)["tokens"]
    assert tok["stale"] == 0 and tok["scanned"] == scanned, tok


def faults_fired(sim):
    _, body = sim.sim("GET", "/_sim/faults")
    return {(r["verb"], r["resource"]) for r in body["rules"] if r.get("count") == 0}


@pytest.fixture
def sim():
    with SimProcess(scenario=GEN, extra_args=["--sa-key-type", "ec"]) as s:
        yield s


def inject(sim):
    """Both faults at once (one run per mode keeps the suite short)."""
    assert sim.sim("POST", "/_sim/faults", {"rules": ONE_503_EACH})[0] == 200
    assert sim.sim("POST", "/_sim/continue/expire", {"always": True})[0] == 200


def test_run_once(sim):
    inject(sim)
    cp = kmop.run(["run", "--once", "-o", "json", "--kubeconfig", sim.kubeconfig], timeout=240)
    assert cp.returncode == 0, cp.stderr[-3000:]
    st = json.loads(cp.stdout)
    assert_exact(st)
    assert st["csr"]["approved"] + st["csr"]["denied"] == 4, st["csr"]
    fired = faults_fired(sim)
    for want in (("patch", "secrets"), ("create", "configmaps"), ("update", "configmaps"),
                 ("update", CSR + "/approval"), ("patch", "apps/deployments")):
        assert want in fired, fired
    assert "listing without pages" in cp.stderr
    assert_nothing_left(sim)


def done(obj):
    csr = (obj or {}).get("status", {}).get("csr") or {}
    c = kmop.cond(obj, "Succeeded")
    return obj if c and c["status"] != "Unknown" and csr.get("approved", 0) + csr.get("denied", 0) == 4 else None


def test_operator(sim, tmp_path):
    kmop.install(sim)
    sa = kmop.sa_kubeconfig(sim)
    inject(sim)
    op = kmop.Operator(sa, str(tmp_path / "op.log"))
    try:
        sim.kubectl("apply", "--validate=false", "-f", "-",
                    input=kmop.crec_yaml("retry", "  csr:\n    windowSeconds: 5\n"))
        obj = kmop.wait_for(lambda: done(kmop.get_crec(sim, "retry")), timeout=240,
                            what="crec/retry completed")
        assert_exact(obj["status"], 621)
        fired = faults_fired(sim)
        for want in (("patch", "secrets"), ("update", CREC + "/status"), ("create", "events")):
            assert want in fired, fired
        assert "listing without pages" in op.text()
    finally:
        op.stop()
    assert_nothing_left(sim, 621)


def status_updates(sim):
    _, snap = sim.sim("GET", "/_sim/counters")
    return sum(r["count"] for r in snap["requests"]
               if r["verb"] == "update" and r["resource"] == CREC and r["subresource"] == "status")


def test_operator_records_a_permanent_error_and_stops(tmp_path):
    """Known bug (a): a 422 on the ClusterRecovery status write was retried forever.  Now the
    failure is recorded (phase Failed, Succeeded False naming it) and not retried; when even that
    write is refused, the operator stops writing.  Known bug (c): every Event is refused (403): one
    warning in the log, the others at debug level."""
    with SimProcess(scenario="seed") as sim:
        kmop.install(sim)
        sa = kmop.sa_kubeconfig(sim)
        rule = {"verb": "update", "resource": CREC + "/status", "code": 422, "count": 1,
                "message": "status.progress: Invalid value"}
        events_403 = {"verb": "create", "resource": "events", "code": 403, "message": "events is forbidden"}
        assert sim.sim("POST", "/_sim/faults", {"rules": [rule, events_403]})[0] == 200
        op = kmop.Operator(sa, str(tmp_path / "op.log"))
        try:
            sim.kubectl("apply", "--validate=false", "-f", "-", input=kmop.crec_yaml("perm"))
            obj = kmop.wait_for(lambda: (lambda o: o if (o or {}).get("status", {}).get("phase") == "Failed"
                                         else None)(kmop.get_crec(sim, "perm")),
                                timeout=60, what="crec/perm Failed")
            c = kmop.cond(obj, "Succeeded")
            assert c["status"] == "False" and c["reason"] == "PermanentError", c
            assert "422" in c["message"] and "status.progress: Invalid value" in c["message"], c
            # every status write refused: a second recovery stops after a bounded number of tries
            # known bug (c): Events refused with 403 are logged once at warning level, not per Event (the
            # sender thread writes them after the status: waited for, counted again at the end)
            warned = "level=warn msg=\"events not recorded: creating Events is forbidden"
            kmop.wait_for(lambda: warned in op.text() and "level=debug msg=\"event not recorded\"" in op.text(),
                          timeout=30, what="the refused Events logged")
            rule["count"] = None
            assert sim.sim("POST", "/_sim/faults", {"rules": [rule, events_403]})[0] == 200
            sim.kubectl("apply", "--validate=false", "-f", "-", input=kmop.crec_yaml("perm2"))
            kmop.wait_for(lambda: "recovery failure not recorded in status" in op.text(), timeout=60,
                          what="the failure logged")
            n = status_updates(sim)
            time.sleep(3)  # the old controller retried at 1 s, 2 s, 4 s ...
            assert status_updates(sim) == n, op.text()[-3000:]
            text = op.text()
            assert text.count(warned) == 1 and text.count("level=debug msg=\"event not recorded\"") >= 2, text
        finally:
            op.stop()
