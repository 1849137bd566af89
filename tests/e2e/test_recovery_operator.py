"""Operator mode on the real server, on every version, installed exactly as the README says, and the CRD on that
server.

One cluster per version (the apiserver audits every request of the kubemend-system ServiceAccounts), in order:
  1. the seed after its PKI rebuild (scene.Scene);
  2. the README's operator-mode block run as written (on servers older than the version the README names, with the
     `kubectl apply` it names for them). The Deployment's pod cannot run kubemend here (no registry holds the
     image; the kubelet simulator only plays a pod), so right after `kubectl apply -k deploy/` this test starts
     what the pod would run: `kubemend operator` with the Deployment's args, as the `kubemend` ServiceAccount (a
     TokenRequest token, `kubectl create token`) - the real authorizer enforces deploy/'s RBAC;
  3. recovery_checks.RecoveryChecks on the server's answers, the ClusterRecovery's status against them,
     `kubectl get/describe crec`, and the audit log: every request of the operator authorized and, once it
     stopped, deploy/'s RBAC exactly what it called (rbac.py); the optional metrics NetworkPolicy accepted;
  4. the CRD as that server serves it: invalid specs rejected by the server (CEL rules from 1.25 on) and by
     kubemend's own validation, and kubemend's defaults equal to the server's defaulting (server-side dry runs:
     nothing is stored).
"""

import json
import os
import re
import subprocess

import pytest

import rbac
import scene as scene_mod
from helpers import wait_for
from recovery_checks import Healed, RecoveryChecks

GROUP = "system:serviceaccounts:" + scene_mod.OPERATOR_NS
SA_USER = "system:serviceaccount:%s:kubemend" % scene_mod.OPERATOR_NS
CONTROL_PLANE = {"audit_groups": [GROUP]}
RECOVERY = "after-pki-rebuild"  # crds/example-recovery.yaml
CRD = "clusterrecoveries.kubemend.io"
CRD_API = "/apis/kubemend.io/v1alpha1/clusterrecoveries"


class Install:
    """The README's block run against the scene: results [(command, CompletedProcess)], the operator, snapshots
    before (right before the ClusterRecovery is applied) and after (right after `kubectl wait` returned)."""

    def __init__(self, sc, tmp):
        self.sc, self.cp = sc, sc.cp
        self.env = scene_mod.command_env(tmp, sc.cp.admin_kubeconfig)
        self.tmp = tmp
        self.results, self.operator, self.before, self.after = [], None, None, None

    def run(self, cmd, timeout=600):
        proc = scene_mod.run_command(cmd, self.env, scene_mod.REPO_ROOT, timeout=timeout)
        self.results.append((cmd, proc))
        return proc

    def start_operator(self):
        """What the Deployment's pod would run, once the ServiceAccount exists."""
        conf = scene_mod.token_kubeconfig(self.cp, self.env, os.path.join(self.tmp, "kubemend-token.conf"))
        dep = json.loads(self.cp.kubectl("get", "deployment", "kubemend", "-n", scene_mod.OPERATOR_NS, "-o",
                                         "json").stdout)
        args = [a for a in dep["spec"]["template"]["spec"]["containers"][0]["args"]
                if not a.startswith(("--metrics-bind-address", "--health-probe-bind-address"))]
        assert args[0] == "operator", args
        self.operator = scene_mod.Operator(conf, os.path.join(self.cp.workdir, "kubemend-operator.log"), args[1:])

    def settle(self):
        """The state the recovery starts from: the Deployment's pod rolled out (the simulator plays it) and, below
        1.24, the ServiceAccount's auto-generated token Secret made."""
        key = "Deployment/%s/kubemend" % scene_mod.OPERATOR_NS
        wait_for(lambda: scene_mod.snapshot(self.cp)["workloads"][key]["rolledOut"], 60, "kubemend's Deployment")
        if self.cp.auto_token_secrets:
            wait_for(lambda: self.cp.client().get("/api/v1/namespaces/%s/serviceaccounts/kubemend" %
                                                  scene_mod.OPERATOR_NS).get("secrets"), 60, "kubemend's token")


@pytest.fixture(scope="module")
def install(scene, tmp_path_factory):
    if not os.access(scene_mod.KUBEMEND, os.X_OK):
        pytest.skip("no kubemend binary at %s (run `make`)" % scene_mod.KUBEMEND)
    cmds = scene_mod.readme_install_commands(scene.cp.minor)
    assert [c.split()[:2] for c in cmds] == [["kubectl", "apply"], ["kubectl", "wait"], ["kubectl", "apply"],
                                             ["kubectl", "wait"], ["kubectl", "describe"]], cmds
    inst = Install(scene, str(tmp_path_factory.mktemp("readme")))
    try:
        assert inst.run(cmds[0]).returncode == 0, inst.results[-1]
        inst.start_operator()
        for cmd in cmds[1:]:
            if cmd.startswith("kubectl apply"):
                inst.settle()
                inst.before = scene_mod.snapshot(inst.cp)
            proc = inst.run(cmd)
            if cmd.startswith("kubectl wait --for=condition=Succeeded"):
                inst.after = scene_mod.snapshot(inst.cp)
            if proc.returncode != 0:
                break
        yield inst
    finally:
        if inst.operator is not None:
            inst.operator.stop()


@pytest.fixture(scope="module")
def healed(scene, install):
    assert install.after is not None, install.results
    return Healed(scene, install.before, install.after, install.operator.text(), RECOVERY)


def crec(cp):
    return cp.client().get(CRD_API + "/" + RECOVERY)


# ---- 2. the README's commands --------------------------------------------------------------------------------

def test_readme_commands_succeed(install):
    failed = [(cmd, p.returncode, p.stdout[-1500:], p.stderr[-1500:]) for cmd, p in install.results
              if p.returncode != 0]
    assert not failed and len(install.results) == 5, failed or install.results
    assert "condition met" in install.results[3][1].stdout


def test_crd_served_as_installed(install):
    cp = install.cp
    obj = cp.client().get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + CRD)
    conds = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
    assert conds["Established"] == "True" and conds["NamesAccepted"] == "True"
    assert [(v["name"], v["served"], v["storage"]) for v in obj["spec"]["versions"]] == [("v1alpha1", True, True)]
    rules = json.dumps(obj["spec"]["versions"][0]["schema"]).count("x-kubernetes-validations")
    # the README: servers older than 1.25 ignore the CEL rules (1.19 drops the unknown field), newer ones keep them
    assert rules == (3 if cp.minor >= 25 else 0), rules  # spec.pods, the selector expression, metadata.name


# ---- 3. the recovery -----------------------------------------------------------------------------------------

class TestOperator(RecoveryChecks):
    """recovery_checks.RecoveryChecks after the README's ClusterRecovery reached Succeeded in operator mode."""

    def test_status_matches_the_server(self, healed):
        st = crec(healed.cp)["status"]
        assert st["phase"] == "Succeeded"
        conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
        assert conds["Succeeded"] == ("True", "Completed"), conds
        assert set(conds) >= {"TokensRegenerated", "ExtensionAuthCleaned", "CSRApprovalWindow", "NodesRejoinReady",
                              "PodsRestarted"}
        assert all(status == "True" for status, _ in conds.values()), conds
        stale = {r for r, t in healed.desc["tokenSecrets"].items() if t["expect"] == "stale" and not t["deleting"]
                 and not t["missingUidAnnotation"]}
        assert st["tokens"]["regenerated"] == st["tokens"]["healed"] == len(stale), st["tokens"]
        assert st["tokens"]["malformedSecrets"] == ["ci/ci-runner-broken-token"]
        csrs = healed.desc["csrs"]
        assert (st["csr"]["approved"], st["csr"]["denied"]) == (len(csrs["valid"]), len(csrs["forged"]))
        restarted = scene_mod.restarted(healed.before, healed.after)
        assert st["pods"]["restarted"] == len(restarted), (st["pods"], restarted)
        assert st["pods"]["evicted"] == len(healed.plan["evictions"])
        assert st["pods"]["manual"] == sorted(healed.plan["manual"])

    def test_every_request_of_the_operator_authorized(self, healed, install):
        events = install.cp.audit_events(SA_USER)
        assert len(events) > 50, len(events)
        assert install.cp.audit_denied(SA_USER) == []
        verbs = {e["verb"] for e in events}
        assert {"list", "watch", "patch", "update", "create"} <= verbs, verbs
        assert not re.search(r"\b403\b|[Ff]orbidden", healed.log), healed.log[-3000:]

    def test_get_crec_shows_the_printer_columns(self, healed):
        out = healed.cp.kubectl("get", "crec").stdout.splitlines()
        assert out[0].split() == ["NAME", "PHASE", "STEP", "PROGRESS", "RESULT", "VERIFIED", "PAUSED", "AGE"], out
        row = out[1].split()
        assert row[:5] == [RECOVERY, "Succeeded", "done", "Completed", "True"], out
        wide = json.loads(healed.cp.kubectl("get", "crec", RECOVERY, "-o", "json").stdout)
        assert wide["status"]["progress"] == "done" and not wide["status"].get("currentStep")

    def test_describe_shows_the_events(self, healed, install):
        out = install.results[4][1].stdout  # the README's `kubectl describe crec after-pki-rebuild`
        events = out[out.index("\nEvents:"):]
        for key in scene_mod.restarted(healed.before, healed.after):
            kind, ns, name = key.split("/")
            assert "rollout restart of %s/%s/%s" % (ns, kind, name) in events, key
        for name in healed.desc["csrs"]["forged"]:
            assert "denied CSR %s " % name in events, name
        for reason in ("TokensRegenerated", "OldCAsRemoved", "CSRApproved", "NeedsManualRestart", "Completed"):
            assert reason in events, reason
        # the server holds them (core/v1, namespace default for a cluster-scoped object)
        listed = healed.cp.client().get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D" +
                                        RECOVERY)["items"]
        assert {e["reason"] for e in listed} >= {"TokensRegenerated", "WorkloadRestarted", "CSRDenied", "Completed"}
        assert all(e["involvedObject"]["uid"] == crec(healed.cp)["metadata"]["uid"] for e in listed)

    def test_verified_condition(self, healed):
        proc = healed.cp.kubectl("wait", "--for=condition=Verified", "crec/" + RECOVERY, "--timeout=5s",
                                 check=False)
        assert proc.returncode == 0, proc.stderr


def test_invalid_spec_fails_without_blocking(install, healed):
    """Issue 16 item 1 on the real server: a spec the CRD accepts but kubemend refuses (a regex that does not
    compile) completes as Failed/InvalidSpec naming the field, at once; a recovery created after it runs."""
    cp = install.cp
    bad = {"apiVersion": "kubemend.io/v1alpha1", "kind": "ClusterRecovery", "metadata": {"name": "bad-regex"},
           "spec": {"csr": {"allowedDNSPatterns": ["(unclosed"]}}}
    st, body = cp.request("POST", CRD_API, bad)
    assert st == 201, body
    good = {"apiVersion": "kubemend.io/v1alpha1", "kind": "ClusterRecovery", "metadata": {"name": "after-bad"},
            "spec": {"dryRun": True, "csr": {"windowSeconds": 1}}}
    st, body = cp.request("POST", CRD_API, good)
    assert st == 201, body
    try:
        def refused():
            o = cp.client().get(CRD_API + "/bad-regex")
            c = [c for c in (o.get("status") or {}).get("conditions") or [] if c["type"] == "Succeeded"]
            return o if c and c[0]["reason"] == "InvalidSpec" else None
        o = wait_for(refused, 60, "bad-regex InvalidSpec")
        c = [c for c in o["status"]["conditions"] if c["type"] == "Succeeded"][0]
        assert o["status"]["phase"] == "Failed" and c["status"] == "False", o["status"]
        assert "spec.csr.allowedDNSPatterns[0]" in c["message"], c
        o = wait_for(lambda: (lambda x: x if (x.get("status") or {}).get("phase") == "Succeeded" else None)(
            cp.client().get(CRD_API + "/after-bad")), 300, "after-bad Succeeded")
        assert "WaitingForOtherRecovery" not in json.dumps(o["status"])
        assert "reconcile failed" not in install.operator.text()
    finally:
        for name in ("bad-regex", "after-bad"):
            cp.request("DELETE", CRD_API + "/" + name)
        wait_for(lambda: all(cp.request("GET", CRD_API + "/" + n)[0] == 404 for n in ("bad-regex", "after-bad")),
                 60, "both deleted (the operator removes its finalizer)")


def test_paused_recovery_waits_then_resumes(install, healed):
    """spec.paused on the real server, in operator mode: a paused recovery does not start (condition Paused
    True/UserPaused, the PAUSED column), `paused: false` resumes it to Succeeded."""
    cp = install.cp
    name = "held"
    cp.kubectl("apply", "-f", "-", input="apiVersion: kubemend.io/v1alpha1\nkind: ClusterRecovery\nmetadata:\n"
               "  name: %s\nspec:\n  paused: true\n  tokens: {enabled: false}\n"
               "  extensionApiserverAuthentication: {enabled: false}\n  csr: {enabled: false}\n" % name)

    def paused():
        o = cp.client().get(CRD_API + "/" + name)
        c = [c for c in (o.get("status") or {}).get("conditions") or [] if c["type"] == "Paused"]
        return c and c[0]["status"] == "True" and (o, c[0])
    o, c = wait_for(paused, 60, "Paused True")
    assert c["reason"] == "UserPaused", c
    assert (o["status"].get("phase") or "") != "Succeeded" and "pods" not in o["status"], o["status"]
    out = cp.kubectl("get", "crec", name).stdout.splitlines()
    assert out[0].split()[6] == "PAUSED" and "True" in out[1].split(), out
    cp.kubectl("patch", "crec", name, "--type", "merge", "-p", '{"spec":{"paused":false}}')
    proc = cp.kubectl("wait", "--for=condition=Succeeded", "crec/" + name, "--timeout=240s", check=False)
    assert proc.returncode == 0, proc.stderr + install.operator.text()[-3000:]
    o = cp.client().get(CRD_API + "/" + name)
    c = [c for c in o["status"]["conditions"] if c["type"] == "Paused"][0]
    assert (c["status"], c["reason"]) == ("False", "UserResumed"), c
    cp.kubectl("delete", "crec", name, "--timeout=60s")


def test_operator_stops_cleanly(install, healed):
    assert install.operator.stop() == 0, install.operator.text()[-3000:]
    assert "released lease" in install.operator.text()


def test_rbac_is_least_privilege(install, healed):
    """deploy/'s rules against the audit log of the whole run (tests/e2e/rbac.py): every call allowed by a rule of
    deploy/, every rule exercised or listed in rbac.EXEMPT. Read once the operator stopped: a watch is audited when
    it ends."""
    install.operator.stop()
    wait_for(lambda: any(e["verb"] == "watch" and (e.get("objectRef") or {}).get("resource") == "clusterrecoveries"
                         for e in install.cp.audit_events(SA_USER)), 30, "the operator's watches in the audit log")
    findings = rbac.check(rbac.load_objects(), install.cp.audit_events(SA_USER))
    assert findings == [], "\n".join(findings)


def test_optional_metrics_networkpolicy_accepted_by_the_server(install):
    """deploy/optional/metrics-networkpolicy.yaml (not in the kustomization) is valid for this server."""
    path = os.path.join(rbac.DEPLOY, "optional", "metrics-networkpolicy.yaml")
    proc = install.cp.kubectl("apply", "--dry-run=server", "-f", path, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "networkpolicy.networking.k8s.io/kubemend-metrics created (server dry run)" in proc.stdout, proc.stdout


# ---- 4. the CRD on this server -------------------------------------------------------------------------------

# (what is wrong, spec, the CEL rule's message when a CEL rule enforces it: only servers >= 1.25 reject it)
DISJOINT = "pods.includeNamespaces and pods.excludeNamespaces must be disjoint"
VALUES = "In and NotIn need values; Exists and DoesNotExist take none"
INVALID = [
    ("tokens.mode outside the enum", {"tokens": {"mode": "Rotate"}}, None),
    ("tokens.verifyTimeoutSeconds above its maximum", {"tokens": {"verifyTimeoutSeconds": 3601}}, None),
    ("tokens.verifyTimeoutSeconds below its minimum", {"tokens": {"verifyTimeoutSeconds": -1}}, None),
    ("csr.windowSeconds below its minimum", {"csr": {"windowSeconds": 0}}, None),
    ("csr.maxExpirationSeconds below its minimum", {"csr": {"maxExpirationSeconds": 599}}, None),
    ("pods.maxConcurrent below its minimum", {"pods": {"maxConcurrent": 0}}, None),
    ("pods.maxConcurrent above its maximum", {"pods": {"maxConcurrent": 101}}, None),
    ("pods.namespaceTimeoutSeconds below its minimum", {"pods": {"namespaceTimeoutSeconds": 0}}, None),
    ("pods.maxConcurrent not an integer", {"pods": {"maxConcurrent": "5"}}, None),
    ("dryRun not a boolean", {"dryRun": "yes"}, None),
    ("a pinned fingerprint that is not hex", {"extensionApiserverAuthentication": {"pinnedFingerprints": ["zz"]}},
     None),
    ("more pinned fingerprints than maxItems",
     {"extensionApiserverAuthentication": {"pinnedFingerprints": ["ab" * 32] * 21}}, None),
    ("an empty allowedDNSPatterns entry", {"csr": {"allowedDNSPatterns": [""]}}, None),
    ("a selector operator outside the enum",
     {"pods": {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}}},
     None),
    ("a matchLabels value that would add selector terms",
     {"pods": {"namespaceSelector": {"matchLabels": {"team": "a,kubernetes.io/metadata.name!=x"}}}}, None),
    ("a matchExpressions key that is not a label key",
     {"pods": {"namespaceSelector": {"matchExpressions": [{"key": "a b", "operator": "Exists"}]}}}, None),
    ("a matchExpressions value that is not a label value",
     {"pods": {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x y"]}]}}},
     None),
    ("includeNamespaces and excludeNamespaces overlap",
     {"pods": {"includeNamespaces": ["a", "b"], "excludeNamespaces": ["b"]}}, DISJOINT),
    ("In without values", {"pods": {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}},
     VALUES),
    ("Exists with values",
     {"pods": {"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}},
     VALUES),
]
VALID = [None, {}, {"dryRun": True}, {"tokens": {"mode": "Delete", "verifyTimeoutSeconds": 0}},
         {"tokens": {"verifyTimeoutSeconds": 3600}, "csr": {"maxExpirationSeconds": 600, "windowSeconds": 1}},
         {"pods": {"maxConcurrent": 1}}, {"pods": {"maxConcurrent": 100, "enabled": False}},
         {"pods": {"includeNamespaces": ["a"], "excludeNamespaces": ["b"], "namespaces": ["c"]}},
         {"pods": {"namespaceSelector": {"matchLabels": {"x": "y"}, "matchExpressions": [
             {"key": "a", "operator": "In", "values": ["1"]}, {"key": "b", "operator": "DoesNotExist"}]}}},
         {"pods": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"},
                                         "matchExpressions": [{"key": "example.com/a_b.c", "operator": "NotIn",
                                                               "values": ["v1", "a-b_c.d"]}]}}},
         {"extensionApiserverAuthentication": {"pinnedFingerprints": ["AB" * 32, ":".join(["0f"] * 32)]}},
         {"csr": {"allowedDNSPatterns": ["[a-z0-9-]+\\.nodes\\.example\\.com"], "continuous": True}}]


def server_dry_run(cp, spec):
    """(status, body) of a server-side dry-run create of a ClusterRecovery with `spec` (None: no spec at all)."""
    obj = {"apiVersion": "kubemend.io/v1alpha1", "kind": "ClusterRecovery", "metadata": {"name": "crd-case"}}
    if spec is not None:
        obj["spec"] = spec
    return cp.request("POST", CRD_API + "?dryRun=All&fieldValidation=Strict", obj)


def kubemend_specs(specs):
    """kubemend's own verdict on each spec (tests/tools/kmspec): {"ok", "spec" | "error"} in order."""
    tool = os.path.join(scene_mod.TOOLS, "kmspec")
    if not os.access(tool, os.X_OK):
        pytest.skip("no %s (run `make`)" % tool)
    proc = subprocess.run([tool], input="".join(json.dumps(s) + "\n" for s in specs), capture_output=True,
                          text=True, timeout=30, check=True)
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(out) == len(specs)
    return out


def test_invalid_specs_rejected_by_the_server_and_by_kubemend(install):
    """The server rejects every invalid spec (one that only a CEL rule catches from 1.25 on, with the rule's
    message; older servers accept it - README); kubemend's own validation rejects every one on any server."""
    cp = install.cp
    mine = kubemend_specs([spec for _, spec, _ in INVALID])
    wrong = []
    for (what, spec, cel), km in zip(INVALID, mine):
        st, body = server_dry_run(cp, spec)
        msg = body.get("message", "") if isinstance(body, dict) else str(body)
        if cel and cp.minor < 25:
            ok = st == 201
        else:
            ok = st == 422 and (cel is None or cel in msg)
        if not ok or km["ok"]:
            wrong.append((what, st, msg, km))
    assert not wrong, wrong


def test_name_length_rule(install):
    """The root CEL rule (>= 1.25): a name whose backup ConfigMap name would exceed 253 characters is refused at
    admission with the rule's message; older servers accept it and kubemend refuses it itself (InvalidSpec)."""
    cp = install.cp
    for n, ok in ((211, True), (212, False)):
        obj = {"apiVersion": "kubemend.io/v1alpha1", "kind": "ClusterRecovery", "metadata": {"name": "n" * n}}
        st, body = cp.request("POST", CRD_API + "?dryRun=All", obj)
        if ok or cp.minor < 25:
            assert st == 201, (n, body)
        else:
            assert st == 422 and "at most 211 characters" in body.get("message", ""), (n, st, body)


def test_kubemend_defaults_equal_the_servers(install):
    mine = kubemend_specs(VALID)
    for spec, km in zip(VALID, mine):
        st, body = server_dry_run(install.cp, spec)
        assert st == 201, (spec, body)
        assert km["ok"], (spec, km)
        assert km["spec"] == body["spec"], (spec, km["spec"], body["spec"])
    assert mine[0]["spec"]["pods"]["maxConcurrent"] == 5 and mine[0]["spec"]["tokens"]["mode"] == "Regenerate"
