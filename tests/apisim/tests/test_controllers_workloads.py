"""ReplicaSet/Deployment/StatefulSet/DaemonSet/Job controllers and the kubelet (in-process)."""

import pytest

from apisim.controllers import local_sim, wait_for


@pytest.fixture
def sim():
    s = local_sim(kubelet_delay=0.05)
    st = s.store
    st.create("namespaces", {"metadata": {"name": "app"}})
    st.create("serviceaccounts", {"metadata": {"name": "worker", "namespace": "app"}})
    for i in (1, 2, 3):
        st.create("nodes", {"metadata": {"name": "n%d" % i}, "status": {"addresses": [
            {"type": "InternalIP", "address": "192.0.2.1%d" % i}, {"type": "Hostname", "address": "n%d" % i}]}})
    yield s
    s.controllers.stop()


def tmpl(app, sa="worker"):
    return {"metadata": {"labels": {"app": app}},
            "spec": {"serviceAccountName": sa, "containers": [{"name": "c", "image": "x:1"}]}}


def restart(o):
    o["spec"]["template"]["metadata"].setdefault("annotations", {})["kubectl.kubernetes.io/restartedAt"] = "now"


def pods_of(sim, prefix, ns="app"):
    return [p for p in sim.store.list("pods", ns) if p["metadata"]["name"].startswith(prefix)]


def ready(p):
    return any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))


def deployment_done(sim, name, replicas):
    d = sim.store.get("apps/deployments", "app", name)
    st = d.get("status") or {}
    ok = (st.get("observedGeneration") == d["metadata"]["generation"] and st.get("updatedReplicas") == replicas
          and st.get("replicas") == replicas and st.get("availableReplicas") == replicas)
    return ok and d


def test_deployment_creates_replicaset_and_ready_pods(sim):
    sim.store.create("apps/deployments", {"metadata": {"name": "web", "namespace": "app"}, "spec": {
        "replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": tmpl("web")}})
    d = wait_for(lambda: deployment_done(sim, "web", 3))
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    conds = {c["type"]: c for c in d["status"]["conditions"]}
    assert conds["Available"]["reason"] == "MinimumReplicasAvailable"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    rss = sim.store.list("apps/replicasets", "app")
    assert len(rss) == 1
    h = rss[0]["metadata"]["labels"]["pod-template-hash"]
    assert rss[0]["metadata"]["name"] == "web-" + h
    assert rss[0]["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    pods = pods_of(sim, "web-")
    assert len(pods) == 3
    for p in pods:
        assert p["metadata"]["name"].startswith("web-%s-" % h) and len(p["metadata"]["name"]) == len(
            "web-%s-" % h) + 5
        ref = p["metadata"]["ownerReferences"][0]
        assert ref["kind"] == "ReplicaSet" and ref["controller"] is True
        assert p["status"]["phase"] == "Running" and ready(p) and p["status"]["podIP"]
        assert [c["type"] for c in p["status"]["conditions"]] == ["Initialized", "Ready", "ContainersReady",
                                                                   "PodScheduled"]
        assert p["spec"]["nodeName"] in ("n1", "n2", "n3")
        assert p["status"]["containerStatuses"][0]["ready"] is True


def test_deployment_restart_rolls_all_pods(sim):
    sim.store.create("apps/deployments", {"metadata": {"name": "web", "namespace": "app"}, "spec": {
        "replicas": 4, "selector": {"matchLabels": {"app": "web"}}, "template": tmpl("web")}})
    wait_for(lambda: deployment_done(sim, "web", 4))
    old = {p["metadata"]["name"] for p in pods_of(sim, "web-")}
    sim.store.mutate("apps/deployments", "app", "web", restart)
    d = wait_for(lambda: deployment_done(sim, "web", 4) if sim.store.get(
        "apps/deployments", "app", "web")["metadata"]["generation"] == 2 else None)
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    wait_for(lambda: len(pods_of(sim, "web-")) == 4)
    new = {p["metadata"]["name"] for p in pods_of(sim, "web-")}
    assert not (old & new)
    rss = {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r
           for r in sim.store.list("apps/replicasets", "app")}
    assert rss["1"]["spec"]["replicas"] == 0 and rss["2"]["spec"]["replicas"] == 4
    assert all(p["metadata"]["labels"]["pod-template-hash"] == rss["2"]["metadata"]["labels"]["pod-template-hash"]
               for p in pods_of(sim, "web-"))


def test_replicaset_replaces_deleted_pod(sim):
    sim.store.create("apps/deployments", {"metadata": {"name": "web", "namespace": "app"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": tmpl("web")}})
    wait_for(lambda: deployment_done(sim, "web", 2))
    victim = pods_of(sim, "web-")[0]["metadata"]["name"]
    sim.store.delete("pods", "app", victim)
    wait_for(lambda: sim.store.get("pods", "app", victim) is None)  # kubelet finalized after the scaled grace
    wait_for(lambda: len([p for p in pods_of(sim, "web-") if ready(p)]) == 2)


def test_statefulset_rolls_in_reverse_ordinal_order(sim):
    sim.store.create("apps/statefulsets", {"metadata": {"name": "db", "namespace": "app"}, "spec": {
        "replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}}, "template": tmpl("db")}})

    def done():
        s = sim.store.get("apps/statefulsets", "app", "db")
        st = s.get("status") or {}
        return (st.get("observedGeneration") == s["metadata"]["generation"] and st.get("readyReplicas") == 3
                and st.get("updatedReplicas") == 3 and st.get("currentRevision") == st.get("updateRevision")) and s
    s1 = wait_for(done)
    assert sorted(p["metadata"]["name"] for p in pods_of(sim, "db-")) == ["db-0", "db-1", "db-2"]
    deleted = []
    sim.store.add_listener(lambda t, r, o: deleted.append(o["metadata"]["name"])
                           if r == "pods" and t == "DELETED" else None)
    sim.store.mutate("apps/statefulsets", "app", "db", restart)
    s2 = wait_for(lambda: done() if sim.store.get("apps/statefulsets", "app", "db")["metadata"][
        "generation"] == 2 else None)
    assert s2["status"]["updateRevision"] != s1["status"]["updateRevision"]
    assert deleted == ["db-2", "db-1", "db-0"]
    for p in pods_of(sim, "db-"):
        assert p["metadata"]["labels"]["controller-revision-hash"] == s2["status"]["updateRevision"]


def test_daemonset_one_pod_per_usable_node_and_rollout(sim):
    sim.controllers.set_node_down("n3")
    sim.store.create("apps/daemonsets", {"metadata": {"name": "agent", "namespace": "app"}, "spec": {
        "selector": {"matchLabels": {"app": "agent"}}, "template": tmpl("agent")}})

    def done(gen):
        d = sim.store.get("apps/daemonsets", "app", "agent")
        st = d.get("status") or {}
        return (d["metadata"]["generation"] == gen and st.get("observedGeneration") == gen
                and st.get("desiredNumberScheduled") == 2 and st.get("updatedNumberScheduled") == 2
                and st.get("numberAvailable") == 2) and d
    wait_for(lambda: done(1))
    pods = pods_of(sim, "agent-")
    assert sorted(p["spec"]["nodeName"] for p in pods) == ["n1", "n2"]
    old = {p["metadata"]["name"] for p in pods}
    sim.store.mutate("apps/daemonsets", "app", "agent", restart)
    wait_for(lambda: done(2))
    wait_for(lambda: len(pods_of(sim, "agent-")) == 2)
    assert not (old & {p["metadata"]["name"] for p in pods_of(sim, "agent-")})


def test_job_pod_owned_by_job_and_completion(sim):
    sim.store.create("batch/jobs", {"metadata": {"name": "once", "namespace": "app"}, "spec": {"template": {
        "metadata": {"annotations": {"apisim.kubemend.io/complete-after-seconds": "0"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x:1"}]}}}})
    j = wait_for(lambda: (sim.store.get("batch/jobs", "app", "once").get("status") or {}).get("succeeded") == 1
                 and sim.store.get("batch/jobs", "app", "once"))
    assert j["status"]["conditions"][0]["type"] == "Complete"
    p = pods_of(sim, "once-")[0]
    assert p["metadata"]["ownerReferences"][0]["kind"] == "Job"
    assert p["metadata"]["labels"]["job-name"] == "once" and p["status"]["phase"] == "Succeeded"


def test_kubelet_down_node_never_ready_and_deletion_stuck(sim):
    sim.controllers.set_node_down("n2")
    sim.store.create("pods", sim.controllers.admit_pod({"metadata": {"name": "on-down", "namespace": "app"},
                                                        "spec": {"nodeName": "n2", "containers": [
                                                            {"name": "c", "image": "x:1"}]}}))
    sim.store.create("pods", {"metadata": {"name": "on-up", "namespace": "app"},
                              "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x:1"}]}})
    wait_for(lambda: ready(sim.store.get("pods", "app", "on-up")))
    wait_for(lambda: (sim.store.get("nodes", None, "n2")["status"].get("conditions") or [{}])[0].get(
        "status") == "Unknown")
    sim.controllers.wait_idle()
    assert not ready(sim.store.get("pods", "app", "on-down"))
    sim.store.delete("pods", "app", "on-down")
    sim.store.delete("pods", "app", "on-up")
    wait_for(lambda: sim.store.get("pods", "app", "on-up") is None)
    assert sim.store.get("pods", "app", "on-down")["metadata"]["deletionTimestamp"]
    sim.controllers.set_node_down("n2", False)
    wait_for(lambda: sim.store.get("pods", "app", "on-down") is None)


def test_unscheduled_pod_gets_scheduled_and_ready(sim):
    sim.store.create("pods", {"metadata": {"name": "free", "namespace": "app"},
                              "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    p = wait_for(lambda: ready(sim.store.get("pods", "app", "free")) and sim.store.get("pods", "app", "free"))
    assert p["spec"]["nodeName"] in ("n1", "n2", "n3")
    assert p["status"]["hostIP"].startswith("192.0.2.1")


def test_mirror_pod_reappears_after_delete(sim):
    sim.store.create("pods", {"metadata": {"name": "kube-apiserver-n1", "namespace": "app",
                                           "annotations": {"kubernetes.io/config.mirror": "abc",
                                                           "kubernetes.io/config.source": "file"}},
                              "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "x:1"}]}})
    first = wait_for(lambda: ready(sim.store.get("pods", "app", "kube-apiserver-n1")) and
                     sim.store.get("pods", "app", "kube-apiserver-n1"))
    sim.store.delete("pods", "app", "kube-apiserver-n1")

    def back():
        p = sim.store.get("pods", "app", "kube-apiserver-n1")
        return p is not None and p["metadata"]["uid"] != first["metadata"]["uid"] and p
    again = wait_for(back)
    assert again["metadata"]["annotations"]["kubernetes.io/config.mirror"] == "abc"
    assert "volumes" not in again["spec"] or not any(
        v["name"].startswith("kube-api-access-") for v in again["spec"].get("volumes", []))
