"""spec.paused, the user's brake, against apisim with the operator under deploy/'s RBAC: a running
recovery paused mid pods step stops at a safe point (condition Paused True/UserPaused, shown by
`kubectl get crec`, phase still Running, nothing written while paused), and `paused: false`
resumes it from status: every pre-rebuild workload restarted exactly once (counted from the
server), serial and with namespaces in parallel.  `run --once` refuses a paused file (exit 2)."""

import json
import time

import pytest

import kmop
from kmop import SimProcess
from test_pods import SEED_RESTARTS, restarts_from_the_server, settled


def patch_paused(sim, name, value):
    sim.kubectl("patch", "crec", name, "--type", "merge", "-p", json.dumps({"spec": {"paused": value}}))


@pytest.mark.parametrize("pods", ["{maxConcurrent: 1}", "{maxConcurrent: 2, parallelNamespaces: 3}"],
                         ids=["serial", "parallel"])
def test_pause_mid_pods_then_resume_restarts_each_workload_once(tmp_path, pods):
    with SimProcess(scenario="seed", extra_args=["--kubelet-delay", "2"]) as sim:
        settled(sim)
        kmop.install(sim)
        op = kmop.Operator(kmop.sa_kubeconfig(sim), str(tmp_path / "op.log"))
        try:
            sim.kubectl("apply", "--validate=false", "-f", "-",
                        input=kmop.crec_yaml("brake", "  pods: %s\n" % pods))

            def in_pods():
                st = (kmop.get_crec(sim, "brake") or {}).get("status") or {}
                return st.get("currentStep") == "pods" and (st.get("pods") or {}).get("namespacesDone", 0) >= 1
            kmop.wait_for(in_pods, timeout=180, what="pods step under way")
            patch_paused(sim, "brake", True)

            def paused():
                o = kmop.get_crec(sim, "brake")
                c = kmop.cond(o, "Paused")
                return c and c["status"] == "True" and o
            o = kmop.wait_for(paused, timeout=120, what="Paused True")
            c = kmop.cond(o, "Paused")
            assert c["reason"] == "UserPaused", c
            assert o["status"]["phase"] == "Running" and o["status"]["currentStep"] == "pods", o["status"]
            assert o["status"]["progress"].startswith("paused"), o["status"]["progress"]
            out = sim.kubectl("get", "crec", "brake").stdout
            assert out.splitlines()[0].split()[6] == "PAUSED" and "True" in out.splitlines()[1].split(), out
            before = o["status"]["pods"]
            assert 1 <= len(before["done"]) < before["namespacesTotal"], before
            restarted_before = restarts_from_the_server(sim)

            # paused: nothing is written (beyond Events and the Lease), the status stays as it is
            sim.sim("POST", "/_sim/counters/reset")
            time.sleep(4)
            w = {k: v for k, v in kmop.writes(sim).items() if not k[1].endswith("leases")}
            assert not w, (w, op.text()[-3000:])
            assert restarts_from_the_server(sim) == restarted_before
            assert kmop.get_crec(sim, "brake")["status"]["pods"] == before

            patch_paused(sim, "brake", False)
            cp = sim.kubectl("wait", "--for=condition=Succeeded", "crec/brake", "--timeout=240s", check=False,
                             timeout=260)
            assert cp.returncode == 0, cp.stderr + op.text()[-4000:]
            o = kmop.get_crec(sim, "brake")
            st = o["status"]
            assert st["phase"] == "Succeeded", st
            c = kmop.cond(o, "Paused")
            assert c["status"] == "False" and c["reason"] == "UserResumed", c
            assert st["pods"]["done"][:len(before["done"])] == before["done"]
            # every pre-rebuild workload restarted exactly once, counted from the server
            assert restarts_from_the_server(sim) == {k: 1 for k in SEED_RESTARTS}
            assert st["pods"]["restarted"] + st["pods"].get("alreadyRestarted", 0) >= len(SEED_RESTARTS)
            desc = sim.kubectl("describe", "crec", "brake").stdout
            assert "Paused" in desc and "Resumed" in desc, desc
        finally:
            op.stop()


def test_run_once_refuses_a_paused_file(tmp_path):
    f = tmp_path / "paused.yaml"
    f.write_text(kmop.crec_yaml("held", "  paused: true\n"))
    cp = kmop.run(["run", "--once", "-f", str(f), "--kubeconfig", str(tmp_path / "none")], timeout=30)
    assert cp.returncode == 2, (cp.returncode, cp.stderr)
    assert "spec.paused is true" in cp.stderr, cp.stderr
