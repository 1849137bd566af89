"""The pod restart step against apisim: selection (each skip rule alone), namespace order and
filters, rollout restart vs eviction vs ownerless pods, a PodDisruptionBudget blocking then
allowing an eviction, a workload stuck on down nodes hitting the namespace timeout, resume
after SIGKILL mid-namespace without restarting any workload twice, and the API requests it
needs (no workload list, and no GET of ServiceAccounts, ReplicaSets or workloads, when the pods
and the patch responses tell)."""

import json
import os
import signal
import subprocess
import time

import pytest

from stepsim import SimProcess, count_requests, get, kmstep, kmstep_args, now_rfc3339, wait_for

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def template_annotation(sim, kind_plural, ns, name):
    obj = get(sim, "/apis/apps/v1/namespaces/%s/%s/%s" % (ns, kind_plural, name))
    return ((obj["spec"]["template"].get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT)


def settled_start(sim):
    """A recovery start after the seed's controllers created every pod (pods created at or after
    the start count as already restarted)."""
    def all_created():
        for plural in ("deployments", "statefulsets"):
            for o in get(sim, "/apis/apps/v1/" + plural)["items"]:
                if o.get("status", {}).get("replicas") != o["spec"].get("replicas", 1):
                    return False
        for o in get(sim, "/apis/apps/v1/daemonsets")["items"]:
            st = o.get("status", {})
            if st.get("currentNumberScheduled") != st.get("desiredNumberScheduled"):
                return False
        return True
    wait_for(all_created, what="seed workloads to have all their pods")
    time.sleep(1.1)
    started = now_rfc3339()
    time.sleep(1.1)
    return started


def ns_order(run):
    """Namespaces in the order the step visited them (from its progress texts)."""
    out = []
    for p in run.progress:
        if "(" in p:
            out.append(p[p.index("(") + 1:-1])
    return out


def pod(name, sa=None, **spec_extra):
    spec = {"containers": [{"name": "c", "image": "registry.example/app:1"}]}
    if sa:
        spec["serviceAccountName"] = sa
    spec.update(spec_extra)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def create(sim, path, obj):
    code, body = sim.request("POST", path, obj)
    assert code == 201, (path, code, body)
    return body


# ---- selection ---------------------------------------------------------------------------------

def test_selection_each_skip_rule_alone():
    with SimProcess() as sim:  # empty cluster without nodes: pods stay unscheduled, nothing restarts them
        create(sim, "/api/v1/namespaces", {"metadata": {"name": "sel"}})
        base = "/api/v1/namespaces/sel/"
        create(sim, base + "serviceaccounts", {"metadata": {"name": "app"}})
        create(sim, base + "serviceaccounts", {"metadata": {"name": "noauto"}, "automountServiceAccountToken": False})
        create(sim, base + "pods", pod("ok", "app"))
        create(sim, base + "pods", pod("default-sa"))
        mirror = pod("mirror", "app")
        mirror["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "abc"}
        create(sim, base + "pods", mirror)
        create(sim, base + "pods", pod("finished", "app"))
        create(sim, base + "pods", pod("no-automount", "app", automountServiceAccountToken=False))
        create(sim, base + "pods", pod("sa-no-automount", "noauto"))
        create(sim, base + "pods", pod("projected", "noauto", volumes=[
            {"name": "tok", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}]))
        # the SA's automount off, decided from the pod's own volumes (no ServiceAccount GET)
        create(sim, base + "pods", pod("sa-no-automount-vol", "noauto", volumes=[
            {"name": "cfg", "configMap": {"name": "app"}}]))
        # an emptyDir over the token path: admission adds no token, the pod has none
        shadow = pod("shadowed", "app", volumes=[{"name": "e", "emptyDir": {}}])
        shadow["spec"]["containers"][0]["volumeMounts"] = [
            {"name": "e", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
        create(sim, base + "pods", shadow)
        assert not [v for v in get(sim, base + "pods/shadowed")["spec"]["volumes"] if "projected" in v]
        deleting = pod("deleting", "app")
        deleting["metadata"]["finalizers"] = ["example.com/hold"]
        create(sim, base + "pods", deleting)
        code, _ = sim.request("DELETE", base + "pods/deleting")
        assert code == 200
        fin = get(sim, base + "pods/finished")
        fin["status"] = {"phase": "Succeeded"}
        code, body = sim.request("PUT", base + "pods/finished/status", fin)
        assert code == 200 and body["status"]["phase"] == "Succeeded", body
        time.sleep(1.1)
        started = now_rfc3339()
        time.sleep(1.1)
        create(sim, base + "pods", pod("new", "app"))

        sim.sim("POST", "/_sim/counters/reset")
        run = kmstep(sim, "pods", started_at=started, spec={"includeNamespaces": ["sel"]})
        assert run.rc == 0, run
        # only sa-no-automount has no volume information at all: its ServiceAccount decides
        assert count_requests(sim, "get", "serviceaccounts") == 1
        # ownerless pods are reported, never deleted: status.pods.manual shows exactly the selected ones
        assert sorted(run.status["manual"]) == ["sel/ok", "sel/projected"], run.status
        assert len(run.reasons("NeedsManualRestart")) == 2
        assert run.status["done"] == ["sel"] and run.status["deleted"] if "deleted" in run.status else True
        for name in ("ok", "projected", "new"):
            assert not get(sim, base + "pods/" + name)["metadata"].get("deletionTimestamp")

        # the default service account only with includeDefaultServiceAccount
        run = kmstep(sim, "pods", started_at=started,
                     spec={"includeNamespaces": ["sel"], "includeDefaultServiceAccount": True})
        assert run.rc == 0, run
        assert sorted(run.status["manual"]) == ["sel/default-sa", "sel/ok", "sel/projected"]

        # deleteOwnerlessPods deletes exactly the selected ones
        run = kmstep(sim, "pods", started_at=started,
                     spec={"includeNamespaces": ["sel"], "deleteOwnerlessPods": True})
        assert run.rc == 0, run
        assert run.status["deleted"] == 2 and "manual" not in run.status
        for name in ("ok", "projected"):
            code, body = sim.request("GET", base + "pods/" + name)
            assert code == 404 or body["metadata"].get("deletionTimestamp"), body
        for name in ("default-sa", "mirror", "finished", "no-automount", "sa-no-automount",
                     "sa-no-automount-vol", "shadowed", "new"):
            assert not get(sim, base + "pods/" + name)["metadata"].get("deletionTimestamp"), name


# ---- the seed cluster --------------------------------------------------------------------------

@pytest.fixture
def seed():
    with SimProcess(scenario="seed") as sim:
        yield sim


def test_order_and_filters_dry_run(seed):
    started = settled_start(seed)
    run = kmstep(seed, "pods", started_at=started, dry_run=True, spec={"namespaces": ["web", "shop", "nope"]})
    assert run.rc == 0, run
    assert ns_order(run) == ["kube-system", "web", "shop", "billing", "ci", "default", "kube-node-lease",
                             "kube-public", "monitoring"]
    assert run.condition["reason"] == "DryRun"
    assert run.status["restarted"] == 10 and run.status["evicted"] == 1
    # dry run wrote nothing
    assert count_requests(seed, "patch", "apps/deployments") == 0
    assert count_requests(seed, "create", "pods", "eviction") == 0
    assert template_annotation(seed, "deployments", "shop", "frontend") is None

    run = kmstep(seed, "pods", started_at=started, dry_run=True,
                 spec={"excludeNamespaces": ["kube-system", "ci"], "namespaces": ["web"]})
    assert ns_order(run) == ["web", "billing", "default", "kube-node-lease", "kube-public", "monitoring", "shop"]

    run = kmstep(seed, "pods", started_at=started, dry_run=True, spec={"includeNamespaces": ["web", "kube-system"]})
    assert ns_order(run) == ["kube-system", "web"]

    seed.kubectl("label", "namespace", "shop", "monitoring", "team=x")
    run = kmstep(seed, "pods", started_at=started, dry_run=True,
                 spec={"namespaceSelector": {"matchExpressions": [
                     {"key": "team", "operator": "In", "values": ["x"]}]}, "excludeNamespaces": ["monitoring"]})
    assert ns_order(run) == ["shop"]
    assert run.status["namespacesTotal"] == 1


def test_rollout_eviction_ownerless(seed):
    started = settled_start(seed)
    job_pods = [p["metadata"]["name"] for p in get(seed, "/api/v1/namespaces/billing/pods")["items"]
                if p["metadata"]["name"].startswith("nightly-report")]
    assert len(job_pods) == 1
    run = kmstep(seed, "pods", started_at=started, spec={"includeNamespaces": ["billing", "ci", "web"],
                                                         "namespaceTimeoutSeconds": 120})
    assert run.rc == 0, run
    st = run.status
    assert st["done"] == ["billing", "ci", "web"]
    assert (st["restarted"], st["evicted"], st.get("deleted", 0)) == (2, 1, 0), st
    assert st["manual"] == ["ci/ci-runner-manual"]
    assert "stuck" not in st and run.condition["status"] == "True"
    # rollout restart: the marker is the recovery's start; default-SA workloads untouched
    assert template_annotation(seed, "deployments", "billing", "invoicer") == started
    assert template_annotation(seed, "deployments", "web", "blog") == started
    assert template_annotation(seed, "deployments", "billing", "billing-ui") is None
    assert template_annotation(seed, "deployments", "web", "static") is None
    # and it waited until rolled out and ready
    for ns, name in (("billing", "invoicer"), ("web", "blog")):
        d = get(seed, "/apis/apps/v1/namespaces/%s/deployments/%s" % (ns, name))
        assert d["status"]["observedGeneration"] >= d["metadata"]["generation"]
        assert d["status"].get("updatedReplicas") == d["spec"]["replicas"] == d["status"].get("availableReplicas")
    # the Job's pod went through the Eviction API
    assert count_requests(seed, "create", "pods", "eviction") >= 1
    code, body = seed.request("GET", "/api/v1/namespaces/billing/pods/" + job_pods[0])
    assert code == 404 or body["metadata"].get("deletionTimestamp")
    # the ownerless pod was not deleted
    assert not get(seed, "/api/v1/namespaces/ci/pods/ci-runner-manual")["metadata"].get("deletionTimestamp")
    assert any("ci/ci-runner-manual" in m for m in run.reasons("NeedsManualRestart"))
    assert len(run.reasons("WorkloadRestarted")) == 2


def _running_job_pod(sim):
    def find():
        for p in get(sim, "/api/v1/namespaces/billing/pods")["items"]:
            if p["metadata"]["name"].startswith("nightly-report") and not p["metadata"].get("deletionTimestamp") \
                    and p["status"].get("phase") == "Running":
                return p
        return None
    return wait_for(find, what="a running nightly-report pod")


def test_pdb_blocks_then_allows_eviction(seed):
    p = _running_job_pod(seed)
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "job-pdb"},
           "spec": {"minAvailable": 1, "selector": {"matchLabels": {"job-name": "nightly-report"}}}}
    assert p["metadata"]["labels"].get("job-name") == "nightly-report", p["metadata"]
    code, body = seed.request("POST", "/apis/policy/v1/namespaces/billing/poddisruptionbudgets", pdb)
    assert code == 201, body
    wait_for(lambda: get(seed, "/apis/policy/v1/namespaces/billing/poddisruptionbudgets/job-pdb")
             .get("status", {}).get("currentHealthy") == 1, what="PDB status")
    started = now_rfc3339(1)
    time.sleep(1.5)
    spec = {"includeNamespaces": ["billing"], "evictionTimeoutSeconds": 120, "waitForReady": False}
    proc = subprocess.Popen(kmstep_args(seed, step="pods", started_at=started, spec=spec),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: count_requests(seed, "create", "pods", "eviction", code=429) >= 2,
                 what="evictions refused by the PDB")
        assert proc.poll() is None  # still retrying
        code, _ = seed.request("DELETE", "/apis/policy/v1/namespaces/billing/poddisruptionbudgets/job-pdb")
        assert code == 200
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    from stepsim import StepRun
    run = StepRun(proc.returncode, out, err)
    assert run.rc == 0, run
    assert run.status["evicted"] == 1 and "stuck" not in run.status, run.status
    assert "eviction refused, retrying" in err

    # a PDB that never allows it: reported as stuck after evictionTimeoutSeconds
    p = _running_job_pod(seed)
    code, body = seed.request("POST", "/apis/policy/v1/namespaces/billing/poddisruptionbudgets", pdb)
    assert code == 201, body
    wait_for(lambda: get(seed, "/apis/policy/v1/namespaces/billing/poddisruptionbudgets/job-pdb")
             .get("status", {}).get("currentHealthy") == 1, what="PDB status")
    time.sleep(1.1)
    started = now_rfc3339()
    time.sleep(1.1)
    run = kmstep(seed, "pods", started_at=started, spec=dict(spec, evictionTimeoutSeconds=3))
    assert run.rc == 0, run
    assert run.status["stuck"] == ["billing/Pod/" + p["metadata"]["name"]], run.status
    assert run.condition["status"] == "False" and run.condition["reason"] == "WorkloadsStuck"
    assert run.reasons("EvictionBlocked")
    assert not get(seed, "/api/v1/namespaces/billing/pods/" + p["metadata"]["name"])["metadata"].get(
        "deletionTimestamp")


def test_stuck_workload_hits_namespace_timeout(seed):
    started = settled_start(seed)
    for node in ("cp-1", "worker-1", "worker-2"):
        code, _ = seed.sim("POST", "/_sim/nodes/%s/down" % node)
        assert code == 200
    run = kmstep(seed, "pods", started_at=started,
                 spec={"includeNamespaces": ["web", "ci"], "namespaces": ["web"], "namespaceTimeoutSeconds": 4})
    assert run.rc == 0, run
    st = run.status
    assert st["stuck"] == ["web/Deployment/blog"], st
    assert any("web/blog" in m for m in run.reasons("WorkloadStuck"))
    # it went on with the next namespace
    assert st["done"] == ["web", "ci"] and st["manual"] == ["ci/ci-runner-manual"]
    assert run.condition["status"] == "False" and run.condition["reason"] == "WorkloadsStuck"


def test_resume_after_sigkill_never_restarts_twice(tmp_path):
    with SimProcess(scenario="seed", extra_args=["--kubelet-delay", "2"]) as sim:
        started = settled_start(sim)
        status_file = str(tmp_path / "status.json")
        spec = {"includeNamespaces": ["kube-system", "monitoring"], "maxConcurrent": 1,
                "namespaceTimeoutSeconds": 120}
        sim.sim("POST", "/_sim/counters/reset")
        proc = subprocess.Popen(kmstep_args(sim, step="pods", started_at=started, spec=spec,
                                            status_file=status_file),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

        def mid_namespace():
            try:
                with open(status_file) as f:
                    st = json.load(f)
            except (OSError, ValueError):
                return None
            cur = st.get("current") or {}
            return st if cur.get("namespace") == "kube-system" and len(cur.get("restarted") or []) == 1 else None
        try:
            st = wait_for(mid_namespace, timeout=120, interval=0.05, what="first kube-system workload restarted")
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert st["done"] == []
        first = st["current"]["restarted"][0]

        run = kmstep(sim, "pods", started_at=started, spec=spec, status_file=status_file)
        assert run.rc == 0, run
        st = run.status
        assert st["done"] == ["kube-system", "monitoring"]
        # every workload restarted exactly once: 3 in kube-system + 3 in monitoring
        assert st["restarted"] == 6, (st, run.events, first)
        patches = sum(count_requests(sim, "patch", r) for r in
                      ("apps/deployments", "apps/daemonsets", "apps/statefulsets"))
        assert patches == 6
        assert first.split("/")[1] not in " ".join(run.reasons("WorkloadRestarted")), run.reasons(
            "WorkloadRestarted")
        for kind, ns, name in (("daemonsets", "kube-system", "calico-node"), ("daemonsets", "kube-system", "kube-proxy"),
                               ("deployments", "kube-system", "coredns"), ("deployments", "monitoring", "prometheus")):
            assert template_annotation(sim, kind, ns, name) == started


# ---- API requests ------------------------------------------------------------------------------

def get_requests(sim):
    """{resource: count} of GETs of single objects."""
    out = {}
    for r in counters_of(sim):
        if r["verb"] == "get" and not r["subresource"]:
            out[r["resource"]] = out.get(r["resource"], 0) + r["count"]
    return out


def counters_of(sim):
    code, body = sim.sim("GET", "/_sim/counters")
    assert code == 200, body
    return body["requests"]


def test_requests_plain_workloads(seed):
    """Deployment / StatefulSet / DaemonSet pods: owners from the pods alone (the Deployment by the
    naming rule, verified with the patch response), the token from the pods' own volumes, the
    readiness wait from one cluster-wide watch per kind: no workload list and no GET at all."""
    started = settled_start(seed)
    seed.sim("POST", "/_sim/counters/reset")
    run = kmstep(seed, "pods", started_at=started, spec={"includeNamespaces": ["kube-system", "web", "shop"],
                                                         "namespaceTimeoutSeconds": 120})
    assert run.rc == 0, run
    st = run.status
    assert st["done"] == ["kube-system", "shop", "web"] and st["restarted"] == 6, st
    assert "stuck" not in st, st
    assert get_requests(seed) == {}, get_requests(seed)
    # owners, the marker and the readiness wait need no list (before: one per kind and namespace)
    for plural in ("deployments", "statefulsets", "daemonsets", "replicasets"):
        assert count_requests(seed, "list", "apps/" + plural) == 0, plural
    patches = sum(count_requests(seed, "patch", r) for r in
                  ("apps/deployments", "apps/daemonsets", "apps/statefulsets"))
    assert patches == 6
    for kind, ns, name in (("deployments", "web", "blog"), ("deployments", "shop", "frontend"),
                           ("statefulsets", "shop", "cart-db"), ("daemonsets", "kube-system", "kube-proxy")):
        assert template_annotation(seed, kind, ns, name) == started
    # and it waited for the rollouts (the wait watched from the first patch response)
    d = get(seed, "/apis/apps/v1/namespaces/web/deployments/blog")
    assert d["status"]["observedGeneration"] >= d["metadata"]["generation"]
    assert d["status"].get("updatedReplicas") == d["spec"]["replicas"] == d["status"].get("availableReplicas")


def test_owner_fallback_gets_only_odd_replicasets():
    """A ReplicaSet that does not follow the Deployment naming rule (no owner, or a selector the
    Deployment does not share) is looked up by GET, once; the Deployment's own one is not."""
    with SimProcess() as sim:  # no nodes: pods stay Pending, nothing finishes a rollout
        create(sim, "/api/v1/namespaces", {"metadata": {"name": "own"}})
        create(sim, "/api/v1/namespaces/own/serviceaccounts", {"metadata": {"name": "app"}})
        tmpl = {"metadata": {"labels": {"app": "dep"}},
                "spec": {"serviceAccountName": "app", "containers": [{"name": "c", "image": "registry.example/a:1"}]}}
        create(sim, "/apis/apps/v1/namespaces/own/deployments", {
            "metadata": {"name": "dep"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "dep"}}, "template": tmpl}})

        def rs(name, labels):
            t = json.loads(json.dumps(tmpl))
            t["metadata"]["labels"] = labels
            create(sim, "/apis/apps/v1/namespaces/own/replicasets", {
                "metadata": {"name": name},
                "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": t}})
        rs("bare", {"app": "bare"})
        # named like dep's ReplicaSets, but dep's selector does not match its pods
        rs("dep-zzz", {"app": "other", "pod-template-hash": "zzz"})

        def pods_by_owner():
            out = {}
            for p in get(sim, "/api/v1/namespaces/own/pods")["items"]:
                refs = p["metadata"].get("ownerReferences") or [{}]
                out.setdefault(refs[0].get("name"), []).append(p["metadata"]["name"])
            return out if sum(len(v) for v in out.values()) == 4 else None
        owners = wait_for(pods_by_owner, what="4 pods")
        dep_rs = [n for n in owners if n not in ("bare", "dep-zzz")]
        assert len(dep_rs) == 1 and dep_rs[0].startswith("dep-"), owners
        time.sleep(1.1)
        started = now_rfc3339()
        time.sleep(1.1)

        sim.sim("POST", "/_sim/counters/reset")
        run = kmstep(sim, "pods", started_at=started, dry_run=True, spec={"includeNamespaces": ["own"]})
        assert run.rc == 0, run
        assert run.reasons("WouldRestartWorkload") == ["would restart own/Deployment/dep (dry run)"]
        evicted = sorted(m.split("/")[-1].split(" ")[0] for m in run.reasons("WouldEvictPod"))
        assert evicted == sorted(owners["bare"] + owners["dep-zzz"]), (evicted, owners)
        assert get_requests(sim) == {"apps/replicasets": 2}, get_requests(sim)
        assert count_requests(sim, "list", "apps/deployments") == 1

        # for real: the naming-rule guess "dep" for dep-zzz is patched, its response's selector
        # does not match dep-zzz's pods, so dep-zzz is resolved by GET (no owner: evicted)
        sim.sim("POST", "/_sim/counters/reset")
        run = kmstep(sim, "pods", started_at=started, spec={"includeNamespaces": ["own"], "waitForReady": False})
        assert run.rc == 0, run
        assert (run.status["restarted"], run.status["evicted"]) == (1, 2), run.status
        assert run.reasons("WorkloadRestarted") == ["rollout restart of own/Deployment/dep"]
        assert count_requests(sim, "patch", "apps/deployments") == 1
        assert get_requests(sim) == {"apps/replicasets": 2}, get_requests(sim)
        assert count_requests(sim, "list", "apps/deployments") == 0
        assert count_requests(sim, "create", "pods", "eviction") == 2
        assert template_annotation(sim, "deployments", "own", "dep") == started
