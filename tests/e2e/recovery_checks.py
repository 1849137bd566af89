"""What the real server must show after kubemend healed the seed, in either mode (run --once or operator).

A test module subclasses RecoveryChecks (the class name starts with Test there) and provides the module-scoped
fixture `healed` -> Healed. Every check reads the server's answers (scene.snapshot() right after the run, or the
server itself where something happens after the run: certificates issued by the signer, evicted pods replaced),
never kubemend's own report, except where that report is what is checked (it must match the server).

Assertions about behaviour issue 12 defines and the product does not have yet are marked
xfail(strict=True): they flip loudly when the fix lands.
"""

import base64
import hashlib
import re
import subprocess

import pytest
from realk8s import seed

import scene
from helpers import pems, wait_for

# forged CSR kind (realk8s.kubelet.CSR_KINDS) -> the check kubemend names in its Denied condition
DENY_CHECK = {"otherNodeIP": "ipAddressNotOwned", "otherNodeDNS": "dnsNameNotOwned", "foreignDNS": "dnsNameNotOwned",
              "nonNodeRequester": "requesterNotNode", "clientUsages": "usageNotAllowed",
              "emailSAN": "emailSANPresent", "uriSAN": "uriSANPresent", "cnMismatch": "subjectMismatch",
              "noOrg": "subjectMismatch", "noSANs": "noSANs"}
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests/"



def discovery_hash(ca_pem):
    """kubeadm join's --discovery-token-ca-cert-hash of a CA, by the openssl pipeline kubeadm documents."""
    pub = subprocess.run(["openssl", "x509", "-pubkey", "-noout"], input=ca_pem.encode(), capture_output=True,
                         check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub, capture_output=True,
                         check=True).stdout
    return "sha256:" + hashlib.sha256(der).hexdigest()


class Healed:
    """cp, desc (seed description), before/after (scene.snapshot() right before/after the run), plan
    (scene.plan()), log (the run's log text), recovery (the ClusterRecovery's name: backup ConfigMap suffix)."""

    def __init__(self, sc, before, after, log, recovery):
        self.cp, self.desc = sc.cp, sc.desc
        self.before, self.after, self.log, self.recovery = before, after, log, recovery
        self.plan = scene.plan(sc.desc, before, sc.rebuilt_at)


def left_alone_tokens(desc):
    """{"ns/name": why} of the token Secrets kubemend deliberately leaves as they are (README, tokens step)."""
    out = {}
    for ref, t in desc["tokenSecrets"].items():
        if t["deleting"]:
            out[ref] = "being deleted"
        elif t["expect"] == "malformed":
            out[ref] = "data.token is not a JWT (reported)"
        elif t["missingUidAnnotation"]:
            out[ref] = "no kubernetes.io/service-account.uid annotation"
    return out


def log_restarts(log):
    """{"Kind/ns/name"} of the rollout restarts the run's log or Events name."""
    return {"%s/%s/%s" % (k, ns, n) for ns, k, n in re.findall(r"rollout restart of ([^/\s]+)/(\w+)/([^\s\"]+)",
                                                                log)}


def log_evictions(log):
    return set(re.findall(r"evicted pod ([^/\s]+/[^\s\"]+)", log))


# RecoveryChecks' checks that hold on an untouched cluster too: what must NOT change, and the plan itself. Every
# other (not xfail) check proves healing and must fail when nothing was done: proving_checks_that_pass().
HOLD_WHEN_NOTHING_DONE = {"test_left_alone_token_secrets_named_and_unchanged", "test_user_created_token_secrets_kept",
                          "test_csrs_of_other_signers_left_alone", "test_plan_covers_the_seed",
                          "test_restarted_workloads_ready_when_the_run_ends", "test_other_workloads_untouched",
                          "test_ownerless_and_tokenless_and_mirror_pods_kept",
                          "test_workloads_created_after_the_rebuild_not_restarted"}


def proving_checks_that_pass(healed):
    """Names of the checks that prove healing (not in HOLD_WHEN_NOTHING_DONE, not xfail) yet pass on `healed`:
    run on a Healed of a run that changed nothing, it must be empty (a check that cannot fail is a defect).
    Checks that read the server read it now."""
    checks = RecoveryChecks()
    names = [n for n in dir(RecoveryChecks) if n.startswith("test_") and n not in HOLD_WHEN_NOTHING_DONE and
             not hasattr(getattr(RecoveryChecks, n), "pytestmark")]
    passing = []
    for name in names:
        try:
            getattr(checks, name)(healed)
        except AssertionError:
            continue
        passing.append(name)
    assert len(names) >= 10, names
    return passing


class RecoveryChecks:
    # ---- tokens ---------------------------------------------------------------------------------------------
    def test_left_alone_token_secrets_named_and_unchanged(self, healed):
        alone = left_alone_tokens(healed.desc)
        assert set(alone) == {"billing/invoicer-token-old", "ci/ci-runner-broken-token",
                              "shop/frontend-manual-token"}, alone
        for ref in alone:
            assert healed.after["tokens"][ref] == healed.before["tokens"][ref], (ref, alone[ref])

    def test_every_other_token_secret_valid_by_token_review(self, healed):
        alone = left_alone_tokens(healed.desc)
        states = seed.token_secret_states(healed.cp)
        rejected = {ref: st["error"] for ref, st in states.items() if ref not in alone and not st["authenticated"]}
        assert not rejected, rejected
        assert set(states) - set(alone), "no token Secret checked"

    def test_stale_token_secrets_regenerated_in_place_fresh_ones_untouched(self, healed):
        b, a = healed.before["tokens"], healed.after["tokens"]
        alone = left_alone_tokens(healed.desc)
        assert set(a) == set(b), "token Secrets created or deleted: %s" % (set(a) ^ set(b))
        for ref, t in healed.desc["tokenSecrets"].items():
            if ref in alone:
                continue
            assert a[ref]["uid"] == b[ref]["uid"], ref  # never deleted
            if t["expect"] == "stale":
                assert a[ref]["tokenSha"] != b[ref]["tokenSha"], ref
            else:
                assert a[ref]["tokenSha"] == b[ref]["tokenSha"], ref  # a valid token is not touched

    def test_user_created_token_secrets_kept(self, healed):
        users = healed.desc["userCreatedTokenSecrets"]
        assert len(users) == 5
        for ref, uid in users.items():
            assert healed.after["tokens"][ref]["uid"] == uid, ref

    # ---- extension-apiserver-authentication -------------------------------------------------------------------
    def test_bundles_hold_only_the_new_cas(self, healed):
        data = healed.after["extauth"]
        assert pems(data["client-ca-file"]) == [healed.desc["ca"]["new"]]
        assert pems(data["requestheader-client-ca-file"]) == [healed.desc["ca"]["newFrontProxy"]]
        for k, v in healed.before["extauth"].items():
            if not k.endswith("-ca-file"):
                assert data[k] == v, k

    def test_backup_holds_the_original(self, healed):
        assert not healed.before["backups"]
        name = "extension-apiserver-authentication-backup-" + healed.recovery
        assert list(healed.after["backups"]) == [name]
        assert healed.after["backups"][name] == healed.before["extauth"]
        assert len(pems(healed.before["extauth"]["client-ca-file"])) == 2

    # ---- CSRs -------------------------------------------------------------------------------------------------
    def test_valid_csrs_approved_and_issued_by_the_real_signer(self, healed):
        cp = healed.cp
        for name in healed.desc["csrs"]["valid"]:
            conds = {c["type"]: c for c in healed.after["csrs"][name]["status"].get("conditions") or []}
            assert set(conds) == {"Approved"} and conds["Approved"]["reason"] == "KubemendApproved", (name, conds)
            cert = wait_for(lambda: cp.client().get(CSR_PATH + name)["status"].get("certificate"), 60,
                            "certificate of " + name)
            pem = base64.b64decode(cert).decode()
            out = subprocess.run(["openssl", "verify", "-CAfile", cp.ca_file], input=pem, capture_output=True,
                                 text=True)
            assert out.returncode == 0, out.stderr
            node = name[len("csr-"):-len("-serving")]
            text = subprocess.run(["openssl", "x509", "-noout", "-text"], input=pem, capture_output=True,
                                  text=True).stdout
            assert "CN = system:node:" + node in text and "IP Address:" + healed.desc["nodes"][node]["ip"] in text

    def test_forged_csrs_denied_with_the_failed_check(self, healed):
        for name, kind in healed.desc["csrs"]["forged"].items():
            st = healed.after["csrs"][name]["status"]
            conds = {c["type"]: c for c in st.get("conditions") or []}
            assert set(conds) == {"Denied"} and conds["Denied"]["reason"] == "KubemendDenied", (name, conds)
            assert conds["Denied"]["message"].startswith(DENY_CHECK[kind] + ":"), (name, kind, conds)
            assert not st.get("certificate"), name

    def test_csrs_of_other_signers_left_alone(self, healed):
        for name in healed.desc["csrs"]["otherSigner"]:
            conds = healed.after["csrs"][name]["status"].get("conditions") or []
            assert not [c for c in conds if c["reason"].startswith("Kubemend")], (name, conds)

    # ---- pods -------------------------------------------------------------------------------------------------
    def test_plan_covers_the_seed(self, healed):
        p = healed.plan
        assert {"Deployment/kube-system/coredns", "DaemonSet/kube-system/calico-node", "StatefulSet/shop/cart-db",
                "Deployment/web/blog", "DaemonSet/monitoring/node-exporter"} <= p["rollouts"], p
        assert "Deployment/shop/catalog" in p["untouched"] and "Deployment/monitoring/grafana" in p["untouched"]
        assert {"StatefulSet/monitoring/alertmanager", "Deployment/web/blog-canary"} <= p["newer"]
        assert p["manual"] == {"ci/ci-runner-manual"}
        assert {r for r in p["evictions"] if r.startswith("ci/ci-worker-")} and len(p["evictions"]) == 3

    def test_stale_workloads_restarted_once_through_rollouts(self, healed):
        b, a = healed.before["workloads"], healed.after["workloads"]
        for key in healed.plan["rollouts"]:
            wb, wa = b[key], a[key]
            assert wa["generation"] == wb["generation"] + 1, (key, wb["generation"], wa["generation"])
            new = set(wa["revisions"]) - set(wb["revisions"])
            assert len(new) == 1 and set(wb["revisions"]) <= set(wa["revisions"]), (key, wb["revisions"],
                                                                                     wa["revisions"])
            marks = {k: v for k, v in wa["templateAnnotations"].items() if k.endswith("/restartedAt")}
            assert marks and marks != {k: v for k, v in wb["templateAnnotations"].items()
                                       if k.endswith("/restartedAt")}, key
            pods = scene.pods_of(healed.after, key)
            assert pods and not set(p["uid"] for p in pods.values()) & set(
                p["uid"] for p in scene.pods_of(healed.before, key).values()), key

    def test_restarted_workloads_ready_when_the_run_ends(self, healed):
        a = healed.after["workloads"]
        late = {k: a[k]["status"] for k in healed.plan["rollouts"] if not a[k]["rolledOut"]}
        assert not late, late

    def test_other_workloads_untouched(self, healed):
        b, a = healed.before["workloads"], healed.after["workloads"]
        changed = {k: (b[k]["generation"], a[k]["generation"]) for k in healed.plan["untouched"]
                   if (a[k]["generation"], a[k]["revisions"]) != (b[k]["generation"], b[k]["revisions"])}
        assert not changed, changed
        for key in healed.plan["untouched"]:
            if not key.startswith(("ReplicaSet/", "Job/")):  # their stale pods are evicted
                kept = {r: p["uid"] for r, p in scene.pods_of(healed.before, key).items()}
                assert {r: p["uid"] for r, p in scene.pods_of(healed.after, key).items()} == kept, key

    def test_pods_without_rollout_evicted_and_replaced(self, healed):
        cp, before = healed.cp, healed.before

        def gone_or_going(ref, wait_gone):
            st, pod = cp.request("GET", "/api/v1/namespaces/%s/pods/%s" % tuple(ref.split("/")))
            if st == 404 or pod["metadata"]["uid"] != before["pods"][ref]["uid"]:
                return True
            # evicted = deleted gracefully: when the namespace was the last one done, the pod may still be
            # terminating (the kubelet's grace period) as the run ends
            return not wait_gone and bool(pod["metadata"].get("deletionTimestamp"))
        for ref in healed.plan["evictions"]:
            assert gone_or_going(ref, False), ref
        wait_for(lambda: all(gone_or_going(r, True) for r in healed.plan["evictions"]), 90,
                 "evicted pods %s gone" % sorted(healed.plan["evictions"]))
        owners = {before["pods"][ref]["owner"] for ref in healed.plan["evictions"]}

        def replaced():
            snap = scene.snapshot(cp)
            return all(w in snap["workloads"] and snap["workloads"][w]["rolledOut"] and any(
                p["ready"] for p in scene.pods_of(snap, w).values()) for w in owners)
        wait_for(replaced, 90, "evicted pods' owners %s ready again" % sorted(owners))

    def test_ownerless_and_tokenless_and_mirror_pods_kept(self, healed):
        desc, a = healed.desc, healed.after["pods"]
        kept = dict(desc["ownerlessPods"], **desc["mirrorPods"])
        assert "ci/ci-runner-manual" in kept and "ci/no-token-job" in kept
        for ref, uid in kept.items():
            assert ref in a and a[ref]["uid"] == uid and not a[ref]["deleting"], ref

    def test_the_log_names_exactly_what_the_server_shows(self, healed):
        assert log_restarts(healed.log) == scene.restarted(healed.before, healed.after), healed.log[-3000:]
        assert log_evictions(healed.log) == healed.plan["evictions"]
        assert "ci/ci-runner-manual" in healed.log

    def test_workloads_created_after_the_rebuild_not_restarted(self, healed):
        restarted = scene.restarted(healed.before, healed.after)
        assert not restarted & healed.plan["newer"], sorted(restarted & healed.plan["newer"])

    def test_only_stale_workloads_restarted(self, healed):
        """Precision: nothing but the plan's rollouts, and (issue 12) workloads created after the rebuild."""
        restarted = scene.restarted(healed.before, healed.after)
        assert restarted - healed.plan["newer"] == healed.plan["rollouts"]

    # ---- kube-public/cluster-info -----------------------------------------------------------------------------
    def test_cluster_info_holds_the_new_ca(self, healed):
        assert healed.before["clusterInfoCA"] == healed.desc["ca"]["old"]
        assert healed.after["clusterInfoCA"] == healed.desc["ca"]["new"]
        # the join hash reported (Events, in the log of either mode), as kubeadm's docs compute it
        assert "--discovery-token-ca-cert-hash " + discovery_hash(healed.desc["ca"]["new"]) in healed.log
        # the original saved next to it; the bootstrap signer re-signed the new kubeconfig
        c = healed.cp.client()
        backup = c.get("/api/v1/namespaces/kube-public/configmaps/cluster-info-backup-" + healed.recovery)
        assert scene.kubeconfig_ca(backup["data"]["kubeconfig"]) == healed.desc["ca"]["old"]
        jws = "jws-kubeconfig-" + healed.desc["clusterInfo"]["tokenId"]
        wait_for(lambda: c.get("/api/v1/namespaces/kube-public/configmaps/cluster-info")["data"].get(jws) !=
                 backup["data"][jws], 60, "the bootstrap signer to re-sign cluster-info")
