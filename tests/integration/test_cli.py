"""kubemend CLI: usage errors (exit 2), recovery files, `run --once` against the simulator
(exit codes, --dry-run writes nothing, a real run heals the seed cluster)."""

import json
import os

import pytest

import kmop
from kmop import SimProcess


@pytest.mark.parametrize("args", [
    ["run", "--once", "--bogus"],
    ["run"],                                  # --once is required
    ["run", "--once", "--steps", "tokens,nope"],
    ["run", "--once", "--csr-window", "-5"],
    ["run", "--once", "-o", "yaml"],
    ["run", "--once", "--log-level", "loud"],
    ["run", "--once", "-f"],                  # missing value
    ["run", "--once", "--qps", "fast"],
    ["run", "--once", "--burst", "0"],
    ["operator", "--workers", "0"],
    ["operator", "--nope"],
    ["operator", "--metrics-bind-address", "nonsense"],
    ["frobnicate"],
    [],
])
def test_usage_errors_exit_2(args):
    cp = kmop.run(args, timeout=20)
    assert cp.returncode == 2, (cp.stdout, cp.stderr)
    assert cp.stderr.strip(), "a usage error must say what is wrong"


def test_help_and_version():
    for args in (["--help"], ["run", "--help"], ["operator", "--help"], ["version", "--help"]):
        cp = kmop.run(args, timeout=20)
        assert cp.returncode == 0 and "Usage" in cp.stdout + cp.stderr, args
    cp = kmop.run(["version"], timeout=20)
    assert cp.returncode == 0 and cp.stdout.startswith("kubemend ")


@pytest.mark.parametrize("text,needle", [
    ("apiVersion: v1\nkind: ClusterRecovery\n", "apiVersion"),
    ("apiVersion: kubemend.io/v1alpha1\nkind: ClusterRecovery\nspec:\n  pods:\n    maxConcurrent: 0\n",
     "spec.pods.maxConcurrent"),
    ("apiVersion: kubemend.io/v1alpha1\nkind: ClusterRecovery\nspec:\n  tokens:\n    mode: Rotate\n",
     "spec.tokens.mode"),
    ("apiVersion: kubemend.io/v1alpha1\nkind: ClusterRecovery\nspec:\n  typo: 1\n", "spec.typo"),
    ("apiVersion: [\n", "line"),
])
def test_invalid_recovery_file_exit_2(tmp_path, text, needle):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    # No cluster is contacted for an invalid file: the kubeconfig does not even exist.
    cp = kmop.run(["run", "--once", "-f", str(p), "--kubeconfig", str(tmp_path / "none")], timeout=20)
    assert cp.returncode == 2, cp.stderr
    assert needle in cp.stderr and str(p) in cp.stderr, cp.stderr


def test_missing_recovery_file_exit_2(tmp_path):
    cp = kmop.run(["run", "--once", "-f", str(tmp_path / "absent.yaml")], timeout=20)
    assert cp.returncode == 2 and "absent.yaml" in cp.stderr


@pytest.fixture(scope="module")
def seed():
    with SimProcess(scenario="seed") as sim:
        yield sim


def test_dry_run_changes_nothing_then_real_run_heals(seed, tmp_path):
    sim = seed
    sim.sim("POST", "/_sim/counters/reset")
    cp = kmop.run(["run", "--once", "--dry-run", "-o", "json", "--kubeconfig", sim.kubeconfig])
    assert cp.returncode == 0, cp.stderr[-3000:]
    status = json.loads(cp.stdout)
    assert status["phase"] == "Succeeded"
    # Verified from the server's answers: nothing was healed, and it says what is left (exit 0: a dry run).
    verified = kmop.cond({"status": status}, "Verified")
    assert verified["status"] == "False" and verified["reason"] == "NotHealed", verified
    assert "tokens: token Secrets not valid" in verified["message"], verified
    assert "kubemend run: dry run: left to heal: left: tokens:" in cp.stderr
    # It computed the work ...
    assert status["tokens"]["stale"] > 0
    assert status["pods"]["restarted"] > 0
    # ... and wrote nothing at all.
    assert kmop.writes(sim, exclude=()) == {}, kmop.writes(sim, exclude=())
    # No CRD and no ClusterRecovery were needed or created.
    code, _ = sim.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusterrecoveries.kubemend.io")
    assert code == 404

    rec = tmp_path / "rec.yaml"
    rec.write_text(kmop.crec_yaml("breakglass", "  csr:\n    windowSeconds: 60\n"))
    cp = kmop.run(["run", "--once", "-f", str(rec), "-o", "json", "--kubeconfig", sim.kubeconfig])
    assert cp.returncode == 0, cp.stderr[-3000:]
    status = json.loads(cp.stdout)
    assert status["phase"] == "Succeeded"
    conds = {c["type"]: c for c in status["conditions"]}
    for t in ("Succeeded", "TokensRegenerated", "ExtensionAuthCleaned", "CSRApprovalWindow", "PodsRestarted",
              "Verified"):
        assert conds[t]["status"] == "True", conds[t]
    assert conds["Verified"]["reason"] == "Healed", conds["Verified"]
    assert status["tokens"]["regenerated"] > 0
    assert "breakglass" in cp.stderr  # progress on the terminal
    w = kmop.writes(sim)
    assert any(k[1] == "secrets" for k in w), w

    # A second run finds nothing left to regenerate (idempotent).
    cp = kmop.run(["run", "--once", "--steps", "tokens", "-o", "json", "--qps", "0", "--burst", "1",
                   "--kubeconfig", sim.kubeconfig])
    assert cp.returncode == 0, cp.stderr[-2000:]
    again = json.loads(cp.stdout)
    assert again["tokens"].get("regenerated", 0) == 0
    conds = {c["type"]: c for c in again["conditions"]}
    assert conds["PodsRestarted"]["reason"] == "Disabled"
    # every check runs, also for the steps not selected: the cluster is healed
    assert conds["Verified"]["status"] == "True", conds["Verified"]


def test_steps_left_out_are_not_verified_exit_3():
    """Only the tokens step on a cluster just after the rebuild: the step succeeds, but the server's answers show
    stale pods and pending kubelet CSRs of known Nodes: Verified False naming them, exit 3."""
    with SimProcess(scenario="seed") as sim:
        cp = kmop.run(["run", "--once", "--steps", "tokens", "-o", "json", "--kubeconfig", sim.kubeconfig])
        assert cp.returncode == 3, cp.stderr[-3000:]
        status = json.loads(cp.stdout)
        assert status["phase"] == "Succeeded"
        conds = {c["type"]: c for c in status["conditions"]}
        assert conds["Succeeded"]["status"] == "True" and conds["TokensRegenerated"]["status"] == "True"
        v = conds["Verified"]
        assert v["status"] == "False" and v["reason"] == "NotHealed", v
        left = v["message"]
        assert left.startswith("left: "), left
        assert "tokens:" not in left, left  # the tokens step healed its part
        assert "extauth: kube-system/extension-apiserver-authentication still holds old or unexpected CAs: " in left
        assert "csr: kubelet CSRs of known Nodes pending: " in left, left
        assert "pods: pods created before the rebuild with a service-account token still running: " in left, left
        assert "kubemend run: not verified (False): " + left in cp.stderr, cp.stderr[-3000:]


def test_failed_step_exits_1(tmp_path):
    with SimProcess() as sim:
        # Every list of Secrets fails: the tokens step cannot finish.
        sim.sim("POST", "/_sim/faults", {"rules": [{"verb": "list", "resource": "secrets", "code": 403, "rate": 1.0}]})
        cp = kmop.run(["run", "--once", "--steps", "tokens", "-o", "json", "--kubeconfig", sim.kubeconfig],
                      timeout=120)
        assert cp.returncode == 1, cp.stderr[-2000:]
        status = json.loads(cp.stdout)
        assert status["phase"] == "Failed"
        assert kmop.cond({"status": status}, "Succeeded")["status"] == "False"


def test_tokens_never_refilled_fail_the_recovery_after_the_later_steps(tmp_path):
    """The engine's settle ending False: Delete mode on the modern profile (>= 1.24 recreates no deleted token
    Secret).  The tokens step hands its wait to the end of the recovery (StepWaiting), the pods step still runs
    and completes, then the settle finds nothing healed: TokensRegenerated False/NotHealed, the recovery Failed
    naming the tokens step (Succeeded False/TokensFailed), exit 1 — never Succeeded on hope."""
    with SimProcess(scenario="seed") as sim:
        rec = tmp_path / "rec.yaml"
        rec.write_text(kmop.crec_yaml("never-refilled", "  tokens:\n    mode: Delete\n    verifyTimeoutSeconds: 3\n"
                                      "  csr:\n    windowSeconds: 5\n"))
        cp = kmop.run(["run", "--once", "-f", str(rec), "-o", "json", "--kubeconfig", sim.kubeconfig])
        assert cp.returncode == 1, (cp.returncode, cp.stderr[-3000:])
        status = json.loads(cp.stdout)
        conds = {c["type"]: c for c in status["conditions"]}
        assert status["phase"] == "Failed", status["phase"]
        t = conds["TokensRegenerated"]
        assert t["status"] == "False" and t["reason"] == "NotHealed", t
        assert status["tokens"]["deleted"] > 0 and status["tokens"]["unhealed"], status["tokens"]
        s = conds["Succeeded"]
        assert s["status"] == "False" and s["reason"] == "TokensFailed", s
        assert s["message"].startswith("step tokens failed: "), s
        assert conds["PodsRestarted"]["status"] == "True", conds["PodsRestarted"]
        assert status["pods"]["restarted"] > 0, status["pods"]
        # the order: handed off, the pods step completed, then the settle's verdict
        log = cp.stderr
        at = [log.index(n) for n in ("reason=StepWaiting ", "step pods completed", "reason=TokensFailed ")]
        assert at == sorted(at), (at, log[-3000:])
