"""Break-glass mode on the real server, on every version: the README's `kubemend run --once` commands run as written
(only /etc/kubernetes/admin.conf is this cluster's admin.conf) against the seed just after its PKI rebuild.

One cluster per version, in order:
  1. the seed as described (realk8s.seed installed, PKI rebuilt, kubelets re-joined, CSRs created): the description
     the checks rely on agrees with the server;
  2. `kubemend run --once --kubeconfig admin.conf --dry-run`: nothing changes on the server;
  3. `kubemend run --once --kubeconfig admin.conf`: recovery_checks.RecoveryChecks on the server's answers;
  4. `kubemend run --once -f recovery.yaml --steps tokens,pods` (recovery.yaml = crds/example-recovery.yaml,
     KUBECONFIG = admin.conf) on the healed cluster: changes nothing (idempotent).
"""

import base64
import json
import os
import re
import time

import pytest
import yaml
from realk8s import seed
from realk8s.pki import load_kubeconfig

import scene as scene_mod
from helpers import extauth, pems
from recovery_checks import Healed, RecoveryChecks, proving_checks_that_pass

ADMIN_CONF = "/etc/kubernetes/admin.conf"


@pytest.fixture(scope="module")
def seeded(scene):
    return scene.desc, scene.before_disaster


@pytest.fixture(scope="module")
def break_glass(scene, tmp_path_factory):
    """(commands, env, cwd): the README's break-glass block for this cluster; cwd holds recovery.yaml."""
    if not os.access(scene_mod.KUBEMEND, os.X_OK):
        pytest.skip("no kubemend binary at %s (run `make`)" % scene_mod.KUBEMEND)
    cmds = scene_mod.readme_break_glass_commands()
    assert len(cmds) == 3 and ADMIN_CONF in cmds[0], cmds
    cwd = str(tmp_path_factory.mktemp("break-glass"))
    scene_mod.copy_example(os.path.join(cwd, "recovery.yaml"))
    cmds = [c.replace(ADMIN_CONF, scene.cp.admin_kubeconfig) for c in cmds]
    return cmds, scene_mod.command_env(cwd, scene.cp.admin_kubeconfig), cwd


def run_step(cp, break_glass, i, log_name):
    """Runs README break-glass command i between two snapshots; (before, proc, after); its output goes to
    <workdir>/<log_name>."""
    cmds, env, cwd = break_glass
    before = scene_mod.snapshot(cp)
    proc = scene_mod.run_command(cmds[i], env, cwd)
    after = scene_mod.snapshot(cp)
    with open(os.path.join(cp.workdir, log_name), "w") as f:
        f.write("$ %s\n%s\n%s" % (cmds[i], proc.stdout, proc.stderr))
    return before, proc, after


@pytest.fixture(scope="module")
def dry_run(scene, break_glass):
    return run_step(scene.cp, break_glass, 0, "kubemend-dry-run.log")


@pytest.fixture(scope="module")
def healed(scene, break_glass, dry_run):
    before, proc, after = run_step(scene.cp, break_glass, 1, "kubemend.log")
    assert proc.returncode == 0, proc.stderr[-4000:]
    healed = Healed(scene, before, after, proc.stderr, "run-once")
    healed.stdout = proc.stdout  # the final status: the conditions as a table
    return healed


def settled(cp, timeout=180):
    """Waits until the first run's rollouts and evictions have played out: two snapshots 5 s apart with the same
    live pods and no pod deleting (a loaded machine may still be rolling when the run returns). False on timeout."""
    end, prev = time.time() + timeout, None
    while time.time() < end:
        pods = scene_mod.snapshot(cp)["pods"]
        live = {k: p["uid"] for k, p in pods.items() if not p["deleting"]}
        if live == prev and all(not p["deleting"] for p in pods.values()):
            return True
        prev = live
        time.sleep(5)
    return False


@pytest.fixture(scope="module")
def rerun(healed, break_glass):
    assert settled(healed.cp), "the first run's rollouts did not settle in 180 s"
    return run_step(healed.cp, break_glass, 2, "kubemend-rerun.log")


# ---- 1. the seed as described ---------------------------------------------------------------------------------

def test_before_the_disaster_everything_ran(seeded):
    desc, before = seeded
    assert before["pods_ready"]
    assert desc["pods"] and all(p["node"] for p in desc["pods"].values())
    assert all(st["authenticated"] for ref, st in before["tokens"].items()
               if ref in desc["tokenSecrets"] and desc["tokenSecrets"][ref]["expect"] == "stale"
               and not st["deleting"])


def test_token_secrets_as_described(control_plane, seeded):
    desc, _ = seeded
    states = seed.token_secret_states(control_plane)
    assert set(desc["tokenSecrets"]) == set(states)
    for ref, info in desc["tokenSecrets"].items():
        assert states[ref]["uid"] == info["uid"], ref
        assert states[ref]["authenticated"] == (info["expect"] == "fresh"), (ref, info, states[ref])
    assert desc["deletingTokenSecrets"] == ["billing/invoicer-token-old"]
    assert states["billing/invoicer-token-old"]["deleting"]
    for ref, uid in desc["userCreatedTokenSecrets"].items():
        assert states[ref]["uid"] == uid
    assert {"ci/ci-deployer-token", "web/blog-publisher", "web/blog-api-token", "shop/frontend-manual-token",
            "ci/ci-runner-broken-token"} == set(desc["userCreatedTokenSecrets"])
    stale = [r for r, i in desc["tokenSecrets"].items() if i["expect"] == "stale"]
    if control_plane.auto_token_secrets:  # every ServiceAccount has one, the controllers' own included
        assert any(r.startswith("kube-system/deployment-controller-token-") for r in stale)
    else:
        assert not any(r.startswith("kube-system/deployment-controller-token-") for r in desc["tokenSecrets"])
    assert any(r.startswith("kube-system/calico-node-token-") for r in stale)


def test_stale_token_secrets_got_the_new_ca(control_plane, seeded):
    """The real tokens controller rewrites ca.crt of the token Secrets it manages but keeps the stale token."""
    desc, _ = seeded
    c = control_plane.client()
    new_ca = control_plane.pki.ca_pem()
    for ref, info in desc["tokenSecrets"].items():
        if info["expect"] != "stale" or info["deleting"] or info["missingUidAnnotation"]:
            continue
        ns, name = ref.split("/")
        data = c.get("/api/v1/namespaces/%s/secrets/%s" % (ns, name))["data"]
        assert base64.b64decode(data["ca.crt"]).decode() == new_ca, ref


def test_workloads_ready_and_pods_kept(control_plane, seeded):
    desc, _ = seeded
    assert desc.builder.workloads_ready(), desc.builder.waiting_on
    c = control_plane.client()
    for ref, uid in list(desc["ownerlessPods"].items()) + list(desc["mirrorPods"].items()):
        ns, name = ref.split("/")
        assert c.get("/api/v1/namespaces/%s/pods/%s" % (ns, name))["metadata"]["uid"] == uid
    kinds = {w["kind"] for w in desc["workloads"].values()}
    assert kinds == {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
    rs_pods = [p for p in desc["pods"].values() if p["owner"] == "ReplicaSet/ci-worker"]
    assert len(rs_pods) == 2 and all(p["serviceAccount"] == "ci-runner" for p in rs_pods)
    assert desc["pods"]["ci/no-token-job"]["automount"] is False
    assert desc["pods"]["monitoring/alertmanager-0"]["phase"] == "after"
    node = c.get("/api/v1/nodes/cp-1")
    assert any(t["key"].startswith("node-role.kubernetes.io/") for t in node["spec"]["taints"])
    assert not [p for p in desc["pods"].values() if p["node"] == "cp-1" and p["owner"] and
                p["owner"].startswith("Deployment/") and not p["owner"].startswith("Deployment/coredns")]


def test_csrs_as_described(control_plane, kubelet, seeded):
    desc, _ = seeded
    c = control_plane.client()
    csrs = {x["metadata"]["name"]: x for x in c.get("/apis/certificates.k8s.io/v1/certificatesigningrequests")[
        "items"]}
    assert set(desc["csrs"]["valid"]) == {"csr-cp-1-serving", "csr-worker-1-serving", "csr-worker-2-serving"}
    for name in desc["csrs"]["valid"]:
        node = name[len("csr-"):-len("-serving")]
        assert csrs[name]["spec"]["username"] == "system:node:" + node
        assert not (csrs[name].get("status") or {}).get("conditions")
    assert csrs["csr-not-a-node"]["spec"]["username"] == "system:serviceaccount:ci:ci-runner"
    assert len(desc["csrs"]["forged"]) == 10 and set(desc["csrs"]["forged"]) <= set(csrs)
    assert desc["csrs"]["skipped"] == {"csr-garbage-pem": desc["csrs"]["skipped"]["csr-garbage-pem"]}
    assert csrs["csr-worker-2-client"]["spec"]["signerName"] == "kubernetes.io/kube-apiserver-client-kubelet"


def test_trust_bundles_and_cluster_info(control_plane, seeded):
    desc, _ = seeded
    data = extauth(control_plane)
    assert sorted(pems(data["client-ca-file"])) == sorted([desc["ca"]["old"], desc["ca"]["new"]])
    assert sorted(pems(data["requestheader-client-ca-file"])) == sorted([desc["ca"]["oldFrontProxy"],
                                                                          desc["ca"]["newFrontProxy"]])
    ci = control_plane.client().get("/api/v1/namespaces/kube-public/configmaps/cluster-info")["data"]
    kc = yaml.safe_load(ci["kubeconfig"])
    ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()
    assert ca == desc["ca"]["old"]  # kubeadm's cluster-info still names the lost CA
    assert "jws-kubeconfig-" + desc["clusterInfo"]["tokenId"] in ci


def test_description_saved(control_plane, seeded):
    desc, _ = seeded
    with open(desc["path"]) as f:
        saved = json.load(f)
    assert saved["tokenSecrets"] == desc["tokenSecrets"] and saved["version"] == control_plane.version
    assert load_kubeconfig(control_plane.admin_kubeconfig)[1] == desc["ca"]["new"]


# ---- 2. the dry run changes nothing --------------------------------------------------------------------------

def _state(snap):
    """What a run may change: workloads' specs, pods, token Secrets, CSR decisions, the CA bundles and backups."""
    return {"workloads": {k: (w["generation"], w["revisions"]) for k, w in snap["workloads"].items()},
            "pods": {k: p["uid"] for k, p in snap["pods"].items()}, "tokens": snap["tokens"],
            "csrs": {k: c.get("status") or {} for k, c in snap["csrs"].items()}, "extauth": snap["extauth"],
            "backups": snap["backups"], "clusterInfoCA": snap["clusterInfoCA"]}


def test_dry_run_changes_nothing(dry_run):
    before, proc, after = dry_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _state(after) == _state(before)


def test_dry_run_says_what_would_change(scene, dry_run):
    _, proc, _ = dry_run
    out = proc.stdout + proc.stderr
    stale = [r for r, t in scene.desc["tokenSecrets"].items() if t["expect"] == "stale" and not t["deleting"] and
             not t["missingUidAnnotation"]]
    assert stale and all(r in out for r in stale), out[-3000:]
    for name in scene.desc["csrs"]["valid"] + list(scene.desc["csrs"]["forged"]):
        assert name in out, name
    for key in ("Deployment/kube-system/coredns", "StatefulSet/shop/cart-db", "DaemonSet/kube-system/kube-proxy"):
        kind, ns, name = key.split("/")
        assert "%s/%s/%s" % (ns, kind, name) in out, key
    csrs = scene.desc["csrs"]
    assert "dry run: would have %d CSRs approved, %d denied" % (len(csrs["valid"]), len(csrs["forged"])) in out
    assert "dry run: dry run" not in out


def test_the_checks_fail_when_nothing_was_done(scene, dry_run):
    """The dry run changed nothing: every check of RecoveryChecks that proves healing fails on its outcome."""
    before, proc, after = dry_run
    assert proving_checks_that_pass(Healed(scene, before, after, proc.stderr, "run-once")) == []


# ---- 3. the run heals the cluster ----------------------------------------------------------------------------

class TestRunOnce(RecoveryChecks):
    """recovery_checks.RecoveryChecks after `kubemend run --once --kubeconfig admin.conf`."""

    def test_run_reports_success(self, healed):
        assert "recovery completed" in healed.log and "level=error" not in healed.log, healed.log[-3000:]
        assert healed.stdout.startswith("ClusterRecovery run-once: Succeeded\n"), healed.stdout
        for cond in ("Succeeded", "TokensRegenerated", "ExtensionAuthCleaned", "CSRApprovalWindow", "NodesRejoinReady",
                     "PodsRestarted"):
            assert re.search(r"^\s+%s\s+True\s" % cond, healed.stdout, re.M), (cond, healed.stdout)

    def test_run_reports_verified(self, healed):
        assert re.search(r"^\s+Verified\s+True\s", healed.stdout, re.M), healed.stdout


# ---- 4. a second run changes nothing -------------------------------------------------------------------------

def test_rerun_succeeds_and_changes_no_token_secret(rerun):
    before, proc, after = rerun
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert after["tokens"] == before["tokens"]
    assert after["extauth"] == before["extauth"]


def test_rerun_restarts_nothing(rerun):
    before, _, after = rerun
    assert scene_mod.restarted(before, after) == set()
    b, a = ({k: p["uid"] for k, p in s["pods"].items()} for s in (before, after))
    assert a == b, {k: (b.get(k), a.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}


# ---- 5. Verified says what is left -----------------------------------------------------------------------------

CM = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"


def test_an_old_ca_added_back_is_not_verified(healed, break_glass, rerun):
    """The old CA written back into extension-apiserver-authentication after the recovery (the run's backup holds
    it): a run whose steps all succeed (tokens only) is not verified, exits 3 and names the CA; put right again,
    the same run exits 0."""
    cp = healed.cp
    healed_bundle = extauth(cp)["client-ca-file"]
    backup = rerun[2]["backups"].get("extension-apiserver-authentication-backup-run-once") or {}
    old = [p for p in pems(backup.get("client-ca-file", "")) if p not in pems(healed_bundle)]
    assert old, "the backup holds no CA the recovery removed"
    cmds, env, cwd = break_glass
    cmd = cmds[1] + " --steps tokens"
    try:
        cp.client().patch(CM, {"data": {"client-ca-file": healed_bundle + old[0]}})
        proc = scene_mod.run_command(cmd, env, cwd)
        assert proc.returncode == 3, (proc.returncode, proc.stderr[-3000:])
        assert proc.stdout.startswith("ClusterRecovery run-once: Succeeded\n"), proc.stdout
        assert re.search(r"^\s+Verified\s+False\s+NotHealed\s", proc.stdout, re.M), proc.stdout
        assert re.search(r"kubemend run: not verified \(False\): left: extauth: .*client-ca-file: superseded",
                         proc.stderr), proc.stderr[-3000:]
    finally:
        cp.client().patch(CM, {"data": {"client-ca-file": healed_bundle}})
    proc = scene_mod.run_command(cmd, env, cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^\s+Verified\s+True\s+Healed\s", proc.stdout, re.M), proc.stdout
