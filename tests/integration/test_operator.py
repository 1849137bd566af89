"""kubemend operator against the simulator, installed from crds/ and deploy/ and running as the
deploy/ ServiceAccount (so the simulator enforces exactly that RBAC): kubectl wait, printer
columns, Events, one recovery at a time, deletion through the finalizer, leader election with
failover after SIGKILL, resume after SIGKILL without redoing units."""

import base64
import json
import os
import threading
import time

import pytest
import yaml

import kmop
from kmop import SimProcess


def _cluster(tmp_path, extra_args=()):
    with SimProcess(scenario="seed", extra_args=extra_args) as sim:
        kmop.install(sim)
        sim.kubeconfig_sa = kmop.sa_kubeconfig(sim)
        ops = []

        def start(name="op"):
            op = kmop.Operator(sim.kubeconfig_sa, str(tmp_path / (name + ".log")))
            ops.append(op)
            return op

        sim.start_operator = start
        yield sim
        for op in ops:
            op.stop()


@pytest.fixture
def cluster(tmp_path):
    yield from _cluster(tmp_path)


@pytest.fixture
def legacy_cluster(tmp_path):
    """The seed on a < 1.24 profile: ServiceAccount admission mounts the account's first token Secret."""
    yield from _cluster(tmp_path, ("--profile", "legacy"))


def apply(sim, name, spec=""):
    sim.kubectl("apply", "--validate=false", "-f", "-", input=kmop.crec_yaml(name, spec))


def test_recovery_succeeds_under_deploy_rbac(cluster):
    sim = cluster
    op = sim.start_operator()
    apply(sim, "fix")
    cp = sim.kubectl("wait", "--for=condition=Succeeded", "crec/fix", "--timeout=180s", check=False, timeout=200)
    assert cp.returncode == 0, cp.stderr + op.text()[-4000:]
    # Verified comes after the final status (Unknown/Verifying in between), from the server's answers
    cp = sim.kubectl("wait", "--for=condition=Verified", "crec/fix", "--timeout=120s", check=False, timeout=140)
    assert cp.returncode == 0, cp.stderr + op.text()[-4000:]
    obj = kmop.get_crec(sim, "fix")
    st = obj["status"]
    assert st["phase"] == "Succeeded" and st.get("currentStep", "") == ""  # "" is not sent
    assert kmop.cond(obj, "Verified")["reason"] == "Healed", kmop.cond(obj, "Verified")
    assert st["observedGeneration"] == obj["metadata"]["generation"]
    for c in st["conditions"]:
        assert c["observedGeneration"] == obj["metadata"]["generation"], c
        assert c["status"] == "True", c
    assert st["tokens"]["regenerated"] > 0 and st["pods"]["restarted"] > 0
    assert "kubemend.io/finalizer" in obj["metadata"]["finalizers"]
    # the PKI rebuild time, derived under deploy/'s RBAC, recorded in status and an Event
    assert st["rebuild"]["time"] and "client-ca-file" in st["rebuild"]["source"], st.get("rebuild")

    out = sim.kubectl("get", "crec").stdout
    header = out.splitlines()[0].split()
    assert header[:4] == ["NAME", "PHASE", "STEP", "PROGRESS"], out
    assert "fix" in out and "Succeeded" in out

    desc = sim.kubectl("describe", "crec", "fix").stdout
    assert "Events:" in desc and "Completed" in desc and "StepCompleted" in desc, desc
    assert "StepWaiting" in desc, desc  # the tokens step handed its wait for the tokens controller to the end
    assert "RebuildTime" in desc, desc
    # The operator never hit an RBAC wall: no request was answered 403 (server-side counters; a
    # log grep for "403" would also match millisecond timestamps).
    _, counters = sim.sim("GET", "/_sim/counters")
    denied = [r for r in counters["requests"] if r["code"] == 403]
    assert not denied, (denied, op.text()[-3000:])
    assert "HTTP 403" not in op.text()


def test_second_recovery_waits(cluster):
    sim = cluster
    sim.start_operator()
    apply(sim, "first")
    kmop.wait_for(lambda: (kmop.get_crec(sim, "first") or {}).get("status", {}).get("phase") == "Running",
                  what="first running")
    apply(sim, "second")

    def second_waiting():
        o = kmop.get_crec(sim, "second")
        c = kmop.cond(o, "Succeeded")
        return c and c["reason"] == "WaitingForOtherRecovery" and o["status"]["phase"] == "Waiting" and c
    c = kmop.wait_for(second_waiting, timeout=60, what="second Waiting")
    assert "first" in c["message"]
    # The first one was still not finished when the second was marked Waiting, or finished since.
    cp = sim.kubectl("wait", "--for=condition=Succeeded", "crec/first", "crec/second", "--timeout=240s",
                     check=False)
    assert cp.returncode == 0, cp.stderr
    a, b = kmop.get_crec(sim, "first"), kmop.get_crec(sim, "second")
    assert a["status"]["completedAt"] <= b["status"]["startedAt"]


def test_invalid_spec_fails_at_once_and_blocks_nobody(cluster):
    """Issue 16 item 1: a recovery that passes the CRD's schema but not kubemend's own checks (a regex
    that does not compile; a name whose backup ConfigMap name would exceed 253 characters - a CEL rule
    on >= 1.25, nothing on older servers or here) completes as Failed/InvalidSpec with the field path,
    is never retried, and a later recovery runs (it used to stay WaitingForOtherRecovery forever)."""
    sim = cluster
    long_name = "n" * 230
    apply(sim, "bad-regex", "  csr:\n    allowedDNSPatterns: ['(unclosed']\n")
    apply(sim, long_name)
    op = sim.start_operator()
    apply(sim, "good", "  dryRun: true\n  csr:\n    windowSeconds: 1\n")

    def refused(name):
        o = kmop.get_crec(sim, name)
        c = kmop.cond(o, "Succeeded")
        return c if c and c["reason"] == "InvalidSpec" else None
    c = kmop.wait_for(lambda: refused("bad-regex"), timeout=60, what="bad-regex InvalidSpec")
    assert c["status"] == "False" and "spec.csr.allowedDNSPatterns[0]" in c["message"], c
    c = kmop.wait_for(lambda: refused(long_name), timeout=60, what="long name InvalidSpec")
    assert "metadata.name" in c["message"] and "211" in c["message"], c
    for name in ("bad-regex", long_name):
        o = kmop.get_crec(sim, name)
        assert o["status"]["phase"] == "Failed", o["status"]
        assert o["status"]["observedGeneration"] == o["metadata"]["generation"]
    cp = sim.kubectl("wait", "--for=condition=Succeeded", "crec/good", "--timeout=180s", check=False, timeout=200)
    assert cp.returncode == 0, cp.stderr + op.text()[-4000:]
    assert "WaitingForOtherRecovery" not in str(kmop.get_crec(sim, "good")["status"])
    # refused once, not retried with backoff
    assert "reconcile failed" not in op.text(), op.text()[-3000:]
    assert op.text().count("recovery refused: invalid spec") == 2, op.text()[-3000:]
    desc = sim.kubectl("describe", "crec", "bad-regex").stdout
    assert "InvalidSpec" in desc, desc


def test_delete_running_recovery_stops_and_removes_finalizer(cluster):
    sim = cluster
    op = sim.start_operator()
    apply(sim, "doomed")
    kmop.wait_for(lambda: (kmop.get_crec(sim, "doomed") or {}).get("status", {}).get("phase") == "Running",
                  what="running")
    cp = sim.kubectl("delete", "crec", "doomed", "--timeout=60s", check=False)
    assert cp.returncode == 0, cp.stderr + op.text()[-3000:]
    kmop.wait_for(lambda: kmop.get_crec(sim, "doomed") is None, timeout=60, what="object gone")
    assert "finalizer removed" in op.text()


def test_only_the_leader_acts_and_failover(cluster):
    sim = cluster
    a = sim.start_operator("a")
    b = sim.start_operator("b")
    kmop.wait_for(lambda: kmop.lease_holder(sim), what="a lease holder")
    kmop.wait_for(lambda: a.leading() or b.leading(), what="a leader")
    time.sleep(3)  # both had several election rounds
    assert a.leading() != b.leading(), "exactly one operator acts"
    leader, standby = (a, b) if a.leading() else (b, a)
    holder = kmop.lease_holder(sim)

    leader.kill()
    # The standby takes over once the lease expired on ITS clock (duration 15 s) ...
    kmop.wait_for(standby.leading, timeout=45, what="failover")
    assert kmop.lease_holder(sim) not in (None, "", holder)
    # ... and it is the one that acts now.
    apply(sim, "after-failover", "  tokens: {enabled: false}\n  extensionApiserverAuthentication: {enabled: false}\n"
                                 "  pods: {enabled: false}\n")
    cp = sim.kubectl("wait", "--for=condition=Succeeded", "crec/after-failover", "--timeout=60s", check=False)
    assert cp.returncode == 0, cp.stderr + standby.text()[-3000:]


def test_resume_after_sigkill_redoes_nothing(cluster):
    sim = cluster
    op = sim.start_operator("first")
    apply(sim, "resume")

    def in_pods():
        o = kmop.get_crec(sim, "resume") or {}
        st = o.get("status") or {}
        return st.get("currentStep") == "pods" and (st.get("pods") or {}).get("namespacesDone", 0) >= 1 and st
    before = kmop.wait_for(in_pods, timeout=120, what="pods step under way")
    op.kill()
    sim.sim("POST", "/_sim/counters/reset")
    op2 = sim.start_operator("second")
    cp = sim.kubectl("wait", "--for=condition=Succeeded", "crec/resume", "--timeout=240s", check=False, timeout=260)
    assert cp.returncode == 0, cp.stderr + op2.text()[-4000:]
    st = kmop.get_crec(sim, "resume")["status"]
    # Finished steps were not run again: no token Secret was written after the restart ...
    w = kmop.writes(sim)
    assert not any(k[1] == "secrets" for k in w), w
    assert st["tokens"]["regenerated"] == before["tokens"]["regenerated"]
    # ... namespaces already done were not restarted again, and the counters add up.
    assert st["pods"]["done"][:len(before["pods"]["done"])] == before["pods"]["done"]
    assert st["startedAt"] == before["startedAt"]
    assert "Resumed" in sim.kubectl("describe", "crec", "resume").stdout


def test_bridged_recovery_is_not_verified_until_the_bridge_goes(cluster):
    """Issue 15: while the server still trusts the old service-account key (the bridge) every step may succeed
    but the cluster is not healed: Verified False naming the bridge. Once the server trusts one key again the
    operator, checking a completed recovery's bridge every minute, turns BridgeRetirable True/BridgeRetired and
    Verified True — with no new run."""
    sim = cluster
    kids = sim.sim("POST", "/_sim/bridge", {"enabled": True})[1]["kids"]
    assert len(kids) == 2, kids
    op = sim.start_operator()
    apply(sim, "bridged")
    cp = sim.kubectl("wait", "--for=condition=Succeeded", "crec/bridged", "--timeout=180s", check=False, timeout=200)
    assert cp.returncode == 0, cp.stderr + op.text()[-4000:]
    cp = sim.kubectl("wait", "--for=condition=Verified=False", "crec/bridged", "--timeout=120s", check=False,
                     timeout=140)
    assert cp.returncode == 0, cp.stderr + op.text()[-4000:]
    obj = kmop.get_crec(sim, "bridged")
    assert "bridge: the API server still accepts the old key" in kmop.cond(obj, "Verified")["message"], obj["status"]
    assert kmop.cond(obj, "BridgeRetirable")["status"] in ("True", "False"), obj["status"]
    assert obj["status"]["tokens"].get("bridged", 0) > 0, obj["status"]["tokens"]
    completed_at = obj["status"]["completedAt"]

    sim.sim("POST", "/_sim/bridge", {"enabled": False})
    cp = sim.kubectl("wait", "--for=condition=Verified", "crec/bridged", "--timeout=150s", check=False, timeout=170)
    assert cp.returncode == 0, cp.stderr + op.text()[-4000:]
    obj = kmop.get_crec(sim, "bridged")
    assert kmop.cond(obj, "BridgeRetirable")["reason"] == "BridgeRetired", obj["status"]
    assert kmop.cond(obj, "Verified")["reason"] == "Healed", obj["status"]
    assert obj["status"]["completedAt"] == completed_at  # checked again, not run again


class PodTokenProbe:
    """Each running pod's legacy token (its mounted token Secret's data.token at first sight: a client that reads
    its token file once at start), used as a bearer token every `interval` s; counts the 401s (apisim, like
    kube-apiserver, compares a legacy token with its Secret's current data)."""

    def __init__(self, sim, interval=0.3):
        self.sim, self.interval = sim, interval
        self.tokens = {}  # pod uid -> (ns/name, secret, token)
        self.probes = self.unauthorized = 0
        self.seen_401 = set()
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _round(self):
        code, pods = self.sim.request("GET", "/api/v1/pods")
        if code != 200:
            return
        live = set()
        for p in pods["items"]:
            uid, ns = p["metadata"]["uid"], p["metadata"]["namespace"]
            live.add(uid)
            if uid not in self.tokens and (p.get("status") or {}).get("phase") == "Running":
                for v in p["spec"].get("volumes") or []:
                    name = (v.get("secret") or {}).get("secretName")
                    if not name:
                        continue
                    code, sec = self.sim.request("GET", "/api/v1/namespaces/%s/secrets/%s" % (ns, name))
                    tok = code == 200 and sec.get("type") == "kubernetes.io/service-account-token" and \
                        (sec.get("data") or {}).get("token")
                    if tok:
                        self.tokens[uid] = ("%s/%s" % (ns, p["metadata"]["name"]), name,
                                            base64.b64decode(tok).decode())
        for uid in list(self.tokens):
            if uid not in live:
                del self.tokens[uid]
                continue
            pod, _, tok = self.tokens[uid]
            code, _ = self.sim.request("GET", "/api", token=tok)
            self.probes += 1
            if code == 401:
                self.unauthorized += 1
                self.seen_401.add(pod)

    def _loop(self):
        while not self.stop_ev.is_set():
            try:
                self._round()
            except OSError:
                pass
            self.stop_ev.wait(self.interval)

    def __enter__(self):
        self._round()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.thread.join()


def test_bridged_recovery_replaces_token_secrets_so_running_pods_see_no_401(legacy_cluster):
    """Issue 15, zero 401s: with deploy/optional/bridge-replace.yaml applied while the server is bridged, a stale
    token Secret that its ServiceAccount lists is replaced (a new "<name>-kubemend" Secret, first in the account's
    secrets), not regenerated: the running pods' old tokens keep working, the restarted pods mount the
    replacement, the old Secret is deleted once no pod refers to it, and the pods' tokens never get a 401. Without
    the optional grant (the test above) bridged Secrets are regenerated in place."""
    sim = legacy_cluster
    sim.sim("POST", "/_sim/bridge", {"enabled": True})
    sim.kubectl("apply", "-f", os.path.join(kmop.ROOT, "deploy", "optional", "bridge-replace.yaml"))
    with PodTokenProbe(sim) as probe:
        assert probe.tokens, "the seed's pods mount token Secrets"
        mounted_before = {sec for _, sec, _ in probe.tokens.values()}
        op = sim.start_operator()
        # every pod restarted (default accounts, ownerless ones too): else their old Secrets rightly stay
        apply(sim, "replace", "  pods: {includeDefaultServiceAccount: true, deleteOwnerlessPods: true}\n")
        cp = sim.kubectl("wait", "--for=condition=Succeeded", "crec/replace", "--timeout=180s", check=False,
                         timeout=200)
        assert cp.returncode == 0, cp.stderr + op.text()[-4000:]
        # regenerated in place, the Secrets of running pods would have failed them by now
        assert probe.unauthorized == 0, (probe.unauthorized, sorted(probe.seen_401))

        def retired():
            st = kmop.get_crec(sim, "replace")["status"]["tokens"]
            return st.get("retiring") == 0 and st.get("retired", 0) > 0 and st
        try:
            tok = kmop.wait_for(retired, timeout=150, interval=1, what="the replaced Secrets retired")
        except AssertionError as e:
            raise AssertionError("%s: %s\n%s" % (e, kmop.get_crec(sim, "replace")["status"], op.text()[-6000:]))
    assert tok["replaced"] > 0 and tok["bridged"] >= tok["replaced"], tok
    assert probe.probes > 0 and probe.unauthorized == 0, (probe.unauthorized, sorted(probe.seen_401))

    secrets = sim.request("GET", "/api/v1/secrets")[1]["items"]
    by_key = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in secrets}
    repl = [s for s in secrets if "kubemend.io/replaces" in (s["metadata"].get("annotations") or {})]
    assert len(repl) == tok["replaced"], [s["metadata"]["name"] for s in repl]
    for r in repl:
        ns, name = r["metadata"]["namespace"], r["metadata"]["name"]
        old = r["metadata"]["annotations"]["kubemend.io/replaces"]
        assert name == old + "-kubemend" and (ns, old) not in by_key, (ns, name)  # the old one retired
        sa = sim.request("GET", "/api/v1/namespaces/%s/serviceaccounts/%s" % (
            ns, r["metadata"]["annotations"]["kubernetes.io/service-account.name"]))[1]
        assert sa["secrets"][0]["name"] == name, sa  # listed first: what new pods mount
        assert old not in [x["name"] for x in sa["secrets"]], sa  # dropped with the Secret
        assert r["data"]["token"]
    # the replaced Secrets were the ones pods mounted, and the restarted pods mount the replacements
    assert mounted_before & {r["metadata"]["annotations"]["kubemend.io/replaces"] for r in repl}
    pods = sim.request("GET", "/api/v1/pods")[1]["items"]
    mounted_now = {(v.get("secret") or {}).get("secretName") for p in pods for v in p["spec"].get("volumes") or []}
    assert mounted_now & {r["metadata"]["name"] for r in repl}
    assert not mounted_now & {r["metadata"]["annotations"]["kubemend.io/replaces"] for r in repl}

    sim.sim("POST", "/_sim/bridge", {"enabled": False})
    cp = sim.kubectl("wait", "--for=condition=Verified", "crec/replace", "--timeout=150s", check=False, timeout=170)
    assert cp.returncode == 0, cp.stderr + op.text()[-4000:]


def test_bridged_replace_refused_by_the_service_account_leaves_nothing_behind(legacy_cluster, tmp_path):
    """A partial grant (token Secrets may be created, ServiceAccounts not patched): a replacement the account cannot
    list would be an extra valid token nobody mounts, so it is deleted again and the bridged Secret regenerated in
    place — as without the grant, which is logged once."""
    sim = legacy_cluster
    sim.sim("POST", "/_sim/bridge", {"enabled": True})
    with open(os.path.join(kmop.ROOT, "deploy", "optional", "bridge-replace.yaml")) as f:
        grant = [o for o in yaml.safe_load_all(f) if o]
    for o in grant:
        if o["kind"] == "ClusterRole":
            o["rules"] = [r for r in o["rules"] if r["resources"] != ["serviceaccounts"]]
    sim.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(grant))
    spec = tmp_path / "partial.yaml"
    spec.write_text(kmop.crec_yaml("partial"))
    r = kmop.run(["run", "--once", "-o", "json", "--steps", "tokens", "-f", str(spec), "--kubeconfig",
                  sim.kubeconfig_sa], timeout=240)
    assert r.stdout.strip(), r.stderr[-3000:]
    tok = json.loads(r.stdout)["tokens"]
    assert tok["bridged"] > 0 and tok.get("replaced", 0) == 0, tok
    assert tok["regenerated"] >= tok["bridged"] and tok["failed"] == 0, tok
    assert r.stderr.count("not allowed to create token Secrets or patch ServiceAccounts") == 1, r.stderr[-3000:]
    left = [s["metadata"]["name"] for s in sim.request("GET", "/api/v1/secrets")[1]["items"]
            if "kubemend.io/replaces" in (s["metadata"].get("annotations") or {})]
    assert not left, left
