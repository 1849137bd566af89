"""The pod restart step against apisim: selection (each skip rule alone; stale = created before the
PKI rebuild), namespace order and filters, rollout restart vs eviction vs ownerless pods, a
PodDisruptionBudget blocking then allowing an eviction, a workload stuck on down nodes hitting the
namespace timeout, what proves an owner (the issue's decoy ReplicaSet), pods created after the
rebuild and workloads already restarted since it left alone, resume after SIGKILL and a chain of
20 SIGKILLed `run --once` restarting each workload exactly once (counted from the server),
transient faults and conflicts on the step's writes, kubemend's own workload last, and the API
requests it needs (the minimum: list pages, the owner lists, one write per changed object)."""

import calendar
import json
import os
import random
import re
import signal
import subprocess
import time

import pytest

import kmop
from stepsim import SimProcess, count_requests, get, kmstep, kmstep_args, now_rfc3339, wait_for

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def epoch(text):
    """RFC 3339 (Z or +hh:mm) as epoch seconds."""
    base, off = text[:19], text[19:]
    t = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    if off and off[0] in "+-":
        sign = 1 if off[0] == "+" else -1
        t -= sign * (int(off[1:3]) * 3600 + int(off[4:6]) * 60)
    return t


def template_annotation(sim, kind_plural, ns, name):
    obj = get(sim, "/apis/apps/v1/namespaces/%s/%s/%s" % (ns, kind_plural, name))
    return ((obj["spec"]["template"].get("metadata") or {}).get("annotations") or {}).get(RESTARTED_AT)


def generation(sim, kind_plural, ns, name):
    return get(sim, "/apis/apps/v1/namespaces/%s/%s/%s" % (ns, kind_plural, name))["metadata"]["generation"]


def assert_restarted_since(sim, kind_plural, ns, name, rebuilt, before=None):
    """The workload's marker: the time of the restart, at or after the rebuild (and not in the future)."""
    mark = template_annotation(sim, kind_plural, ns, name)
    assert mark, (kind_plural, ns, name)
    assert rebuilt <= epoch(mark) <= (before or time.time() + 1), (mark, rebuilt)


def settled(sim):
    """Waits until the seed's controllers created every pod (nothing left to race with)."""
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

    # then quiet: no workload written for a second (the controllers' status writes are over, so a
    # guarded PATCH from a listed resourceVersion does not conflict)
    def versions():
        return {(plural, meta["namespace"], meta["name"]): meta["resourceVersion"]
                for plural in ("deployments", "statefulsets", "daemonsets")
                for meta in (o["metadata"] for o in get(sim, "/apis/apps/v1/" + plural)["items"])}
    last = [versions()]

    def quiet():
        time.sleep(1.0)
        now = versions()
        same, last[0] = now == last[0], now
        return same
    wait_for(quiet, what="seed workloads' status writes to be over")


def ca_not_before(pem):
    out = subprocess.run(["openssl", "x509", "-noout", "-startdate"], input=pem, capture_output=True, text=True,
                         check=True).stdout
    return calendar.timegm(time.strptime(out.strip().split("=", 1)[1].replace(" GMT", ""), "%b %d %H:%M:%S %Y"))


def rebuilt_at(sim):
    """The cluster's rebuild time as kubemend derives it: the current CA's notBefore."""
    code, body = sim.sim("GET", "/_sim/pki")
    assert code == 200, body
    return ca_not_before(body["caCert"])


def rebuild_pki(sim):
    """The disaster on a running simulator: what exists now predates the new CA (a second later)."""
    time.sleep(1.1)
    code, body = sim.sim("POST", "/_sim/pki-rebuild")
    assert code == 200, body
    time.sleep(1.1)
    return ca_not_before(body["caCert"])


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


def counters_of(sim):
    code, body = sim.sim("GET", "/_sim/counters")
    assert code == 200, body
    return body["requests"]


def requests_by(sim, verbs=None):
    """{(verb, resource, subresource): count} of successful requests since the last reset."""
    out = {}
    for r in counters_of(sim):
        if r["resource"] == "_sim" or not 200 <= r["code"] < 300 or (verbs and r["verb"] not in verbs):
            continue
        k = (r["verb"], r["resource"], r["subresource"])
        out[k] = out.get(k, 0) + r["count"]
    return out


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
        rebuilt = rebuild_pki(sim)  # everything above predates it ...
        create(sim, base + "pods", pod("new", "app"))  # ... this one does not

        sim.sim("POST", "/_sim/counters/reset")
        run = kmstep(sim, "pods", spec={"includeNamespaces": ["sel"]})
        assert run.rc == 0, run
        assert epoch(run.rebuild["time"]) == rebuilt, run.rebuild  # derived from the new CA
        # only sa-no-automount has no volume information at all: its ServiceAccount decides
        assert count_requests(sim, "get", "serviceaccounts") == 1
        # ownerless pods are reported, never deleted: status.pods.manual shows exactly the selected ones
        assert sorted(run.status["manual"]) == ["sel/ok", "sel/projected"], run.status
        assert len(run.reasons("NeedsManualRestart")) == 2
        assert run.status["done"] == ["sel"] and "deleted" not in run.status
        for name in ("ok", "projected", "new"):
            assert not get(sim, base + "pods/" + name)["metadata"].get("deletionTimestamp")

        # the default service account only with includeDefaultServiceAccount
        run = kmstep(sim, "pods", spec={"includeNamespaces": ["sel"], "includeDefaultServiceAccount": True})
        assert run.rc == 0, run
        assert sorted(run.status["manual"]) == ["sel/default-sa", "sel/ok", "sel/projected"]

        # deleteOwnerlessPods deletes exactly the selected ones
        run = kmstep(sim, "pods", spec={"includeNamespaces": ["sel"], "deleteOwnerlessPods": True})
        assert run.rc == 0, run
        assert run.status["deleted"] == 2 and "manual" not in run.status
        for name in ("ok", "projected"):
            code, body = sim.request("GET", base + "pods/" + name)
            assert code == 404 or body["metadata"].get("deletionTimestamp"), body
        for name in ("default-sa", "mirror", "finished", "no-automount", "sa-no-automount",
                     "sa-no-automount-vol", "shadowed", "new"):
            assert not get(sim, base + "pods/" + name)["metadata"].get("deletionTimestamp"), name

        # --rebuild-time overrides the derived time: "new" predates a rebuild said to be now
        run = kmstep(sim, "pods", spec={"includeNamespaces": ["sel"]}, rebuild_time=now_rfc3339(2))
        assert run.rc == 0, run
        assert run.rebuild["source"] == "--rebuild-time"
        assert sorted(run.status["manual"]) == ["sel/new"], run.status


def test_unknown_rebuild_time_fails_naming_the_field():
    with SimProcess() as sim:
        # the CA ConfigMaps cannot be read (403): nothing tells when the PKI was rebuilt
        sim.sim("POST", "/_sim/faults", {"rules": [{"verb": "get", "resource": "configmaps", "code": 403}]})
        sim.sim("POST", "/_sim/counters/reset")
        run = kmstep(sim, "pods", current_ca="-")
        assert run.rc == 1, run
        assert "time" not in run.rebuild, run.rebuild
        err = [x["error"] for x in run.lines if "error" in x][0]
        assert "spec.rebuildTime" in err and "--rebuild-time" in err, err
        assert "extension-apiserver-authentication" in err, err  # and why it is unknown
        # it guessed nothing: no pod list, no write
        assert requests_by(sim, ("list", "patch", "create", "delete")) == {}, requests_by(sim)


# ---- the seed cluster --------------------------------------------------------------------------

@pytest.fixture
def seed():
    with SimProcess(scenario="seed") as sim:
        settled(sim)
        yield sim


def test_order_and_filters_dry_run(seed):
    # the default: kube-system first and alone, then parallelNamespaces (4) at once
    run = kmstep(seed, "pods", dry_run=True)
    assert run.rc == 0, run
    order = ns_order(run)
    assert order[0] == "kube-system" and any("," in n for n in order[1:]), order
    # the order itself, one namespace after another
    run = kmstep(seed, "pods", dry_run=True, spec={"namespaces": ["web", "shop", "nope"], "parallelNamespaces": 1})
    assert run.rc == 0, run
    assert ns_order(run) == ["kube-system", "web", "shop", "billing", "ci", "default", "kube-node-lease",
                             "kube-public", "monitoring"]
    assert run.condition["reason"] == "DryRun"
    # every pre-rebuild workload on a token (alertmanager was created after the rebuild: fresh)
    assert run.status["restarted"] == 9 and run.status["evicted"] == 1, run.status
    # dry run wrote nothing
    assert count_requests(seed, "patch", "apps/deployments") == 0
    assert count_requests(seed, "create", "pods", "eviction") == 0
    assert template_annotation(seed, "deployments", "shop", "frontend") is None

    run = kmstep(seed, "pods", dry_run=True, spec={"excludeNamespaces": ["kube-system", "ci"], "namespaces": ["web"],
                                              "parallelNamespaces": 1})
    assert ns_order(run) == ["web", "billing", "default", "kube-node-lease", "kube-public", "monitoring", "shop"]

    run = kmstep(seed, "pods", dry_run=True, spec={"includeNamespaces": ["web", "kube-system"], "parallelNamespaces": 1})
    assert ns_order(run) == ["kube-system", "web"]

    seed.kubectl("label", "namespace", "shop", "monitoring", "team=x")
    run = kmstep(seed, "pods", dry_run=True,
                 spec={"namespaceSelector": {"matchExpressions": [
                     {"key": "team", "operator": "In", "values": ["x"]}]}, "excludeNamespaces": ["monitoring"]})
    assert ns_order(run) == ["shop"]
    assert run.status["namespacesTotal"] == 1


def test_rollout_eviction_ownerless(seed):
    rebuilt = rebuilt_at(seed)
    job_pods = [p["metadata"]["name"] for p in get(seed, "/api/v1/namespaces/billing/pods")["items"]
                if p["metadata"]["name"].startswith("nightly-report")]
    assert len(job_pods) == 1
    run = kmstep(seed, "pods", spec={"includeNamespaces": ["billing", "ci", "web"], "namespaceTimeoutSeconds": 120})
    assert run.rc == 0, run
    st = run.status
    assert sorted(st["done"]) == ["billing", "ci", "web"]  # in parallel (the default): done as they finish
    assert (st["restarted"], st["evicted"], st.get("deleted", 0)) == (2, 1, 0), st
    assert st["manual"] == ["ci/ci-runner-manual"]
    assert "stuck" not in st and run.condition["status"] == "True"
    # rollout restart: the marker is the time of the restart, after the rebuild; default-SA workloads untouched
    assert_restarted_since(seed, "deployments", "billing", "invoicer", rebuilt)
    assert_restarted_since(seed, "deployments", "web", "blog", rebuilt)
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

    # run again: every pod now postdates the rebuild (rolled out, the Job's new pod): nothing to do
    seed.sim("POST", "/_sim/counters/reset")
    again = kmstep(seed, "pods", spec={"includeNamespaces": ["billing", "ci", "web"]})
    assert again.rc == 0, again
    assert (again.status.get("restarted", 0), again.status.get("evicted", 0)) == (0, 0), again.status
    assert again.status["manual"] == ["ci/ci-runner-manual"]
    assert requests_by(seed, ("patch", "create", "delete")) == {}, requests_by(seed)


def _running_job_pod(sim, other_than=None):
    def find():
        for p in get(sim, "/api/v1/namespaces/billing/pods")["items"]:
            if p["metadata"]["name"].startswith("nightly-report") and not p["metadata"].get("deletionTimestamp") \
                    and p["status"].get("phase") == "Running" and p["metadata"]["name"] != other_than:
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
    spec = {"includeNamespaces": ["billing"], "evictionTimeoutSeconds": 120, "waitForReady": False}
    proc = subprocess.Popen(kmstep_args(seed, step="pods", spec=spec),
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

    # a PDB that never allows it: reported as stuck after evictionTimeoutSeconds.  The Job's new
    # pod postdates the rebuild: the admin says the rebuild was just now (--rebuild-time).
    p = _running_job_pod(seed, other_than=p["metadata"]["name"])
    code, body = seed.request("POST", "/apis/policy/v1/namespaces/billing/poddisruptionbudgets", pdb)
    assert code == 201, body
    wait_for(lambda: get(seed, "/apis/policy/v1/namespaces/billing/poddisruptionbudgets/job-pdb")
             .get("status", {}).get("currentHealthy") == 1, what="PDB status")
    time.sleep(1.1)
    run = kmstep(seed, "pods", spec=dict(spec, evictionTimeoutSeconds=3), rebuild_time=now_rfc3339())
    assert run.rc == 0, run
    assert run.status["stuck"] == ["billing/Pod/" + p["metadata"]["name"]], run.status
    assert run.condition["status"] == "False" and run.condition["reason"] == "WorkloadsStuck"
    assert run.reasons("EvictionBlocked")
    assert not get(seed, "/api/v1/namespaces/billing/pods/" + p["metadata"]["name"])["metadata"].get(
        "deletionTimestamp")


def test_stuck_workload_hits_namespace_timeout(seed):
    for node in ("cp-1", "worker-1", "worker-2"):
        code, _ = seed.sim("POST", "/_sim/nodes/%s/down" % node)
        assert code == 200
    run = kmstep(seed, "pods", spec={"includeNamespaces": ["web", "ci"], "namespaces": ["web"],
                                     "namespaceTimeoutSeconds": 4})
    assert run.rc == 0, run
    st = run.status
    assert st["stuck"] == ["web/Deployment/blog"], st
    assert any("web/blog" in m for m in run.reasons("WorkloadStuck"))
    # it went on with the next namespace
    assert sorted(st["done"]) == ["ci", "web"] and st["manual"] == ["ci/ci-runner-manual"]
    assert run.condition["status"] == "False" and run.condition["reason"] == "WorkloadsStuck"


# ---- precision: what proves an owner ------------------------------------------------------------

def test_decoy_replicaset_is_evicted_and_the_deployment_untouched():
    """The issue's decoy: a standalone ReplicaSet decoy-5d8f7c9b4 (pods labelled pod-template-hash
    5d8f7c9b4, SA worker) next to an unrelated Deployment decoy (default SA).  The ReplicaSet list
    proves the ReplicaSet has no Deployment: its pod is evicted, Deployment/decoy is never written.
    A real Deployment's stale pod in the same namespace is restarted through its Deployment."""
    with SimProcess(scenario="seed") as sim:  # nodes: pods run and are recreated
        settled(sim)
        ns = "decoys"
        create(sim, "/api/v1/namespaces", {"metadata": {"name": ns}})
        create(sim, "/api/v1/namespaces/%s/serviceaccounts" % ns, {"metadata": {"name": "worker"}})
        apps = "/apis/apps/v1/namespaces/%s/" % ns
        tmpl = {"spec": {"containers": [{"name": "c", "image": "registry.example/a:1"}]}}
        decoy = create(sim, apps + "deployments", {
            "metadata": {"name": "decoy"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "decoy-web"}},
                     "template": dict(tmpl, metadata={"labels": {"app": "decoy-web"}})}})
        labels = {"app": "worker", "pod-template-hash": "5d8f7c9b4"}
        create(sim, apps + "replicasets", {
            "metadata": {"name": "decoy-5d8f7c9b4", "labels": {"team": "batch"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": dict(tmpl["spec"], serviceAccountName="worker")}}})
        create(sim, apps + "deployments", {
            "metadata": {"name": "api"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
                     "template": {"metadata": {"labels": {"app": "api"}},
                                  "spec": dict(tmpl["spec"], serviceAccountName="worker")}}})

        def running():
            pods = get(sim, "/api/v1/namespaces/%s/pods" % ns)["items"]
            ok = [p for p in pods if p["status"].get("phase") == "Running"]
            return pods if len(ok) == 3 == len(pods) and complete("api") and complete("decoy") else None

        def complete(name):
            # the deployment controller's last status write: a later one would make the guarded
            # PATCH conflict (409) and re-read the Deployment, one GET the count below does not expect
            d = get(sim, apps + "deployments/" + name)
            conds = {c["type"]: c.get("reason") for c in d.get("status", {}).get("conditions", [])}
            return conds.get("Progressing") == "NewReplicaSetAvailable" and \
                d["status"].get("availableReplicas") == 1
        pods = wait_for(running, what="3 running pods, both Deployments complete")
        decoy_pod = [p for p in pods if p["metadata"]["ownerReferences"][0]["name"] == "decoy-5d8f7c9b4"][0]
        rebuilt = rebuild_pki(sim)
        decoy_gen = generation(sim, "deployments", ns, "decoy")

        sim.sim("POST", "/_sim/counters/reset")
        run = kmstep(sim, "pods", spec={"includeNamespaces": [ns], "namespaceTimeoutSeconds": 120})
        used = requests_by(sim)
        assert run.rc == 0, run
        assert (run.status["restarted"], run.status["evicted"]) == (1, 1), run.status
        assert run.reasons("WorkloadRestarted") == ["rollout restart of %s/Deployment/api" % ns]
        assert run.reasons("PodEvicted") == ["evicted pod %s/%s" % (ns, decoy_pod["metadata"]["name"])]
        # Deployment/decoy: never written, same generation, no marker
        assert generation(sim, "deployments", ns, "decoy") == decoy_gen == decoy["metadata"]["generation"]
        assert template_annotation(sim, "deployments", ns, "decoy") is None
        assert_restarted_since(sim, "deployments", ns, "api", rebuilt)
        # what proved it: one pod list, one ReplicaSet list, one Deployment list, one patch, one eviction
        assert used == {
            ("get", "configmaps", ""): 2,  # the rebuild time: client-ca-file and kube-root-ca.crt
            ("list", "namespaces", ""): 1,
            ("list", "pods", ""): 1,
            ("list", "apps/replicasets", ""): 1,
            ("list", "apps/deployments", ""): 1,
            ("patch", "apps/deployments", ""): 1,
            ("create", "pods", "eviction"): 1,
        }, used
        # the eviction carried the listed pod's uid as its precondition (the RS recreated the pod)
        code, body = sim.request("GET", "/api/v1/namespaces/%s/pods/%s" % (ns, decoy_pod["metadata"]["name"]))
        assert code == 404 or body["metadata"].get("deletionTimestamp")


def test_pods_created_after_the_rebuild_are_not_restarted(seed):
    rebuilt = rebuilt_at(seed)
    apps = "/apis/apps/v1/namespaces/shop/"
    create(seed, apps + "deployments", {
        "metadata": {"name": "checkout"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "checkout"}},
                 "template": {"metadata": {"labels": {"app": "checkout"}},
                              "spec": {"serviceAccountName": "frontend",
                                       "containers": [{"name": "c", "image": "registry.example/c:1"}]}}}})
    wait_for(lambda: len([p for p in get(seed, "/api/v1/namespaces/shop/pods")["items"]
                          if p["metadata"]["name"].startswith("checkout-")]) == 2, what="checkout pods")
    for p in get(seed, "/api/v1/namespaces/shop/pods")["items"]:
        if p["metadata"]["name"].startswith("checkout-"):
            assert epoch(p["metadata"]["creationTimestamp"]) >= rebuilt
    seed.sim("POST", "/_sim/counters/reset")
    run = kmstep(seed, "pods", spec={"includeNamespaces": ["shop"], "namespaceTimeoutSeconds": 120})
    assert run.rc == 0, run
    assert run.status["restarted"] == 2, run.status  # frontend and cart-db, not checkout
    assert generation(seed, "deployments", "shop", "checkout") == 1
    assert template_annotation(seed, "deployments", "shop", "checkout") is None
    assert count_requests(seed, "patch", "apps/deployments") == 1


def test_workload_already_restarted_since_the_rebuild_is_not_patched(seed):
    """`kubectl rollout restart` after the rebuild (marker in local time with an offset): kubemend
    waits for its readiness and writes nothing to it."""
    env = dict(os.environ, TZ="Asia/Kolkata")  # kubectl writes local time: +05:30
    cp = subprocess.run([os.environ.get("KUBECTL", "kubectl"), "--kubeconfig", seed.kubeconfig, "-n", "shop",
                         "rollout", "restart", "deployment/frontend"], capture_output=True, text=True, env=env)
    assert cp.returncode == 0, cp.stderr
    mark = template_annotation(seed, "deployments", "shop", "frontend")
    gen = generation(seed, "deployments", "shop", "frontend")
    seed.sim("POST", "/_sim/counters/reset")
    run = kmstep(seed, "pods", spec={"includeNamespaces": ["shop"], "namespaceTimeoutSeconds": 120})
    assert run.rc == 0, run
    assert (run.status["restarted"], run.status["alreadyRestarted"]) == (1, 1), run.status
    assert any("shop/Deployment/frontend" in m for m in run.reasons("WorkloadAlreadyRestarted"))
    assert template_annotation(seed, "deployments", "shop", "frontend") == mark
    assert generation(seed, "deployments", "shop", "frontend") == gen
    assert count_requests(seed, "patch", "apps/deployments") == 0
    assert count_requests(seed, "patch", "apps/statefulsets") == 1  # cart-db
    # it waited for frontend's rollout too
    d = get(seed, "/apis/apps/v1/namespaces/shop/deployments/frontend")
    assert d["status"].get("updatedReplicas") == d["spec"]["replicas"] == d["status"].get("availableReplicas")


# ---- idempotence ---------------------------------------------------------------------------------

SEED_RESTARTS = {  # the seed's pre-rebuild workloads on tokens: each must be restarted exactly once
    ("daemonsets", "kube-system", "calico-node"), ("daemonsets", "kube-system", "kube-proxy"),
    ("deployments", "kube-system", "coredns"), ("deployments", "shop", "frontend"),
    ("statefulsets", "shop", "cart-db"), ("deployments", "billing", "invoicer"),
    ("daemonsets", "monitoring", "node-exporter"), ("deployments", "monitoring", "prometheus"),
    ("deployments", "web", "blog")}


def restarts_from_the_server(sim):
    """{(plural, ns, name): restarts} counted from the server: generation changes of the template
    (every seed workload starts at generation 1) and, for Deployments, the ReplicaSets created."""
    out = {}
    rs_by_owner = {}
    for rs in get(sim, "/apis/apps/v1/replicasets")["items"]:
        for ref in rs["metadata"].get("ownerReferences") or []:
            rs_by_owner[ref["uid"]] = rs_by_owner.get(ref["uid"], 0) + 1
    for plural in ("deployments", "statefulsets", "daemonsets"):
        for o in get(sim, "/apis/apps/v1/" + plural)["items"]:
            md = o["metadata"]
            n = md["generation"] - 1
            if plural == "deployments":
                assert rs_by_owner.get(md["uid"], 0) - 1 == n, (md["name"], rs_by_owner.get(md["uid"]), n)
            if n:
                out[(plural, md["namespace"], md["name"])] = n
    return out


def test_resume_after_sigkill_never_restarts_twice(tmp_path):
    with SimProcess(scenario="seed", extra_args=["--kubelet-delay", "2"]) as sim:
        settled(sim)
        rebuilt = rebuilt_at(sim)
        status_file = str(tmp_path / "status.json")
        spec = {"includeNamespaces": ["kube-system", "monitoring"], "maxConcurrent": 1,
                "namespaceTimeoutSeconds": 120}
        sim.sim("POST", "/_sim/counters/reset")
        proc = subprocess.Popen(kmstep_args(sim, step="pods", spec=spec, status_file=status_file),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

        def mid_namespace():
            try:
                with open(status_file) as f:
                    st = json.load(f)
            except (OSError, ValueError):
                return None
            cur = (st.get("current") or [{}])[0]
            return st if cur.get("namespace") == "kube-system" and len(cur.get("restarted") or []) == 1 else None
        try:
            st = wait_for(mid_namespace, timeout=120, interval=0.05, what="first kube-system workload restarted")
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert st["done"] == []
        first = st["current"][0]["restarted"][0]

        run = kmstep(sim, "pods", spec=spec, status_file=status_file)
        assert run.rc == 0, run
        st = run.status
        assert st["done"] == ["kube-system", "monitoring"]
        # every workload restarted exactly once: 3 in kube-system + 2 in monitoring (alertmanager
        # was created after the rebuild); the first one counted once (status.pods.current)
        assert st["restarted"] == 5 and st.get("alreadyRestarted", 0) == 0, (st, run.events, first)
        patches = sum(count_requests(sim, "patch", r) for r in
                      ("apps/deployments", "apps/daemonsets", "apps/statefulsets"))
        assert patches == 5
        assert first.split("/")[1] not in " ".join(run.reasons("WorkloadRestarted")), run.reasons(
            "WorkloadRestarted")
        for kind, ns, name in (("daemonsets", "kube-system", "calico-node"), ("daemonsets", "kube-system", "kube-proxy"),
                               ("deployments", "kube-system", "coredns"), ("deployments", "monitoring", "prometheus")):
            assert_restarted_since(sim, kind, ns, name, rebuilt)
        assert {k: v for k, v in restarts_from_the_server(sim).items() if k[1] in ("kube-system", "monitoring")} == \
            {k: 1 for k in SEED_RESTARTS if k[1] in ("kube-system", "monitoring")}


def test_sigkill_chain_of_run_once_restarts_each_workload_exactly_once(tmp_path):
    """20 SIGKILLs at seeded random moments of `kubemend run --once` in a chain (what an admin does:
    the same command again), then the same command until it succeeds: every pre-rebuild workload
    restarted exactly once, counted from the server; no state file anywhere."""
    rng = random.Random(12)
    with SimProcess(scenario="seed") as sim:
        settled(sim)
        args = [kmop.BIN, "run", "--once", "-o", "json", "--kubeconfig", str(sim.kubeconfig)]
        kills, in_pods = [], []
        for i in range(20):
            delay = rng.uniform(0.05, 5.0)
            path = str(tmp_path / ("kill-%02d.log" % i))
            with open(path, "w") as log:
                proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log, cwd=str(tmp_path))
                time.sleep(delay)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
                    kills.append(round(delay, 2))
                proc.wait()
            with open(path) as f:
                if proc.returncode == -signal.SIGKILL and "pods: running" in f.read():
                    in_pods.append(i)  # killed inside the pods step
        # once every restart is done a run needs no wait and ends before its kill: the chain
        # killed runs before and inside the pods step
        assert len(kills) >= 5 and len(in_pods) >= 3, (kills, in_pods)
        mid = restarts_from_the_server(sim)
        assert all(v == 1 for v in mid.values()), mid  # never twice, even mid-chain
        cp = kmop.run(args[1:], timeout=600)
        assert cp.returncode == 0, cp.stderr[-3000:]
        status = json.loads(cp.stdout)
        assert status["phase"] == "Succeeded"
        assert restarts_from_the_server(sim) == {k: 1 for k in SEED_RESTARTS}, (kills, restarts_from_the_server(sim))
        # only our logs in its working directory: no state file
        assert all(f.startswith("kill-") for f in os.listdir(str(tmp_path))), os.listdir(str(tmp_path))


# ---- transient faults ------------------------------------------------------------------------------

@pytest.mark.parametrize("rule", [
    {"verb": "patch", "resource": "apps/deployments", "code": 503},
    {"verb": "patch", "resource": "apps/daemonsets", "code": 500},
    {"verb": "patch", "resource": "apps/statefulsets", "code": 409},  # a conflict: read again, decide again
    {"verb": "create", "resource": "pods/eviction", "code": 503},
    {"verb": "list", "resource": "apps/replicasets", "code": 503},
    # more failures in a row than the client retries a read: the step retries the namespace's plan
    {"verb": "list", "resource": "pods", "code": 503, "count": 7},
], ids=lambda r: "%s-%s-%d-x%d" % (r["verb"], r["resource"].replace("/", "-"), r["code"], r.get("count", 1)))
def test_one_shot_fault_on_the_pods_step_still_succeeds_exactly(seed, rule):
    seed.sim("POST", "/_sim/faults", {"rules": [dict({"count": 1}, **rule)]})
    seed.sim("POST", "/_sim/counters/reset")
    cp = kmop.run(["run", "--once", "--steps", "pods", "-o", "json", "--kubeconfig", seed.kubeconfig], timeout=600)
    # 3: the pods step succeeded; with only it run the recovery is not Verified (tokens, CAs, CSRs left)
    assert cp.returncode in (0, 3), cp.stderr[-3000:]
    status = json.loads(cp.stdout)
    assert status["phase"] == "Succeeded", status
    assert kmop.cond({"status": status}, "PodsRestarted")["status"] == "True"
    # the fault did fire, and the end state is exact: each workload restarted once, the Job's pod evicted once
    fired = [r for r in counters_of(seed) if r["code"] == rule["code"]]
    assert fired, counters_of(seed)
    assert restarts_from_the_server(seed) == {k: 1 for k in SEED_RESTARTS}
    assert (status["pods"]["restarted"], status["pods"]["evicted"]) == (len(SEED_RESTARTS), 1), status["pods"]
    assert count_requests(seed, "create", "pods", "eviction", code=201) == 1
    if rule["code"] == 409:
        assert count_requests(seed, "get", "apps/statefulsets") == 1  # the re-read
    if rule.get("count", 1) > 6:  # beyond the client's 5 retries: the step's own
        assert "pods: transient failure, retrying" in cp.stderr


# ---- kubemend's own workload ------------------------------------------------------------------------

def _own_cluster(sim):
    """kubemend-system/kubemend (Deployment, SA kubemend) and shop-like app/api, both before the rebuild."""
    for ns in ("kubemend-system", "app"):
        create(sim, "/api/v1/namespaces", {"metadata": {"name": ns}})
    create(sim, "/api/v1/namespaces/kubemend-system/serviceaccounts", {"metadata": {"name": "kubemend"}})
    create(sim, "/api/v1/namespaces/app/serviceaccounts", {"metadata": {"name": "api"}})
    for ns, name, sa in (("kubemend-system", "kubemend", "kubemend"), ("app", "api", "api")):
        create(sim, "/apis/apps/v1/namespaces/%s/deployments" % ns, {
            "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"serviceAccountName": sa,
                                           "containers": [{"name": "c", "image": "registry.example/k:1"}]}}}})
    own = wait_for(lambda: [p for p in get(sim, "/api/v1/namespaces/kubemend-system/pods")["items"]
                            if p["status"].get("phase") == "Running"], what="kubemend's pod")[0]
    wait_for(lambda: [p for p in get(sim, "/api/v1/namespaces/app/pods")["items"]
                      if p["status"].get("phase") == "Running"], what="api's pod")
    return own["metadata"]["name"]


def test_own_workload_restarted_last_after_the_status_is_final(tmp_path):
    with SimProcess(scenario="seed") as sim:
        settled(sim)
        own_pod = _own_cluster(sim)
        rebuilt = rebuild_pki(sim)
        status_file = str(tmp_path / "status.json")
        env = dict(os.environ, POD_NAMESPACE="kubemend-system", POD_NAME=own_pod)
        run = kmstep(sim, "pods", spec={"includeNamespaces": ["kubemend-system", "app", "web"],
                                        "namespaces": ["kubemend-system"], "namespaceTimeoutSeconds": 120},
                     env=env, status_file=status_file)
        assert run.rc == 0, run
        assert run.status["self"]["workload"] == "kubemend-system/Deployment/kubemend"
        assert run.status["self"]["action"] == "Restarted", run.status["self"]
        # its namespace came first, yet it was restarted after everything else
        reasons = [e["reason"] for e in run.events if e["reason"] in ("WorkloadRestarted", "OwnWorkloadRestarted")]
        assert reasons[-1] == "OwnWorkloadRestarted" and reasons.count("OwnWorkloadRestarted") == 1, reasons
        assert len(reasons) == 3  # app/api and web/blog before it
        assert_restarted_since(sim, "deployments", "kubemend-system", "kubemend", rebuilt)
        assert generation(sim, "deployments", "kubemend-system", "kubemend") == 2
        # the step's status said what would come last before it happened (saved, then the restart)
        assert "kubemend's own" in run.condition["message"]


def test_own_workload_restarted_after_the_final_status_and_verified(tmp_path):
    """run --once (issue 12 item 7): kubemend's own Deployment, whose token is not proven valid (admin
    credentials), is restarted after everything else: after Completed and after Verified, which does not count
    kubemend's own pod as left (the other steps were not selected: not verified, exit 3)."""
    with SimProcess(scenario="seed") as sim:
        settled(sim)
        own_pod = _own_cluster(sim)
        rebuild_pki(sim)
        env = dict(os.environ, POD_NAMESPACE="kubemend-system", POD_NAME=own_pod)
        rec = tmp_path / "rec.yaml"
        rec.write_text(kmop.crec_yaml("own", "  pods:\n    includeNamespaces: [kubemend-system, app]\n"))
        cp = kmop.run(["run", "--once", "--steps", "pods", "-f", str(rec), "-o", "json", "--kubeconfig",
                       str(sim.kubeconfig)], env=env, timeout=600)
        assert cp.returncode == 3, cp.stderr[-3000:]
        status = json.loads(cp.stdout)
        assert status["pods"]["self"]["action"] == "Restarted", status["pods"]["self"]
        verified = kmop.cond({"status": status}, "Verified")
        assert verified["status"] == "False" and "app/api" not in verified["message"], verified
        assert "kubemend-system/" + own_pod not in verified["message"], verified
        log = cp.stderr
        order = [log.index("reason=%s " % r) for r in ("Completed", "NotHealed", "OwnWorkloadRestarted")]
        assert order == sorted(order), log[-3000:]
        assert generation(sim, "deployments", "kubemend-system", "kubemend") == 2


def test_own_workload_skipped_when_its_own_token_is_valid(tmp_path):
    with SimProcess(scenario="seed") as sim:
        settled(sim)
        own_pod = _own_cluster(sim)
        rebuild_pki(sim)
        # the operator's in-cluster credentials: a token of its ServiceAccount from the rebuilt
        # control plane (what the kubelet mounts), allowed to do everything
        create(sim, "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "metadata": {"name": "kubemend-all"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "kubemend", "namespace": "kubemend-system"}]})
        code, tr = sim.request("POST", "/api/v1/namespaces/kubemend-system/serviceaccounts/kubemend/token",
                               {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                "spec": {"expirationSeconds": 3600}})
        assert code == 201, tr
        d = tmp_path / "sa"
        d.mkdir()
        (d / "token").write_text(tr["status"]["token"])
        (d / "namespace").write_text("kubemend-system")
        with open(sim.ca_file) as f:
            (d / "ca.crt").write_text(f.read())
        env = dict(os.environ, POD_NAMESPACE="kubemend-system", POD_NAME=own_pod,
                   KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT=str(sim.port))
        run = kmstep(sim, "pods", spec={"includeNamespaces": ["kubemend-system", "app"],
                                        "namespaceTimeoutSeconds": 120},
                     env=env, kubeconfig="incluster:" + str(d))
        assert run.rc == 0, run
        assert run.status["self"]["action"] == "Skipped", run.status["self"]
        assert "own token is valid" in run.status["self"]["message"]
        assert generation(sim, "deployments", "kubemend-system", "kubemend") == 1
        assert template_annotation(sim, "deployments", "kubemend-system", "kubemend") is None
        assert generation(sim, "deployments", "app", "api") == 2
        assert not run.reasons("OwnWorkloadRestarted")


# ---- API requests ------------------------------------------------------------------------------

def test_requests_at_the_minimum(seed):
    """Deployment / StatefulSet / DaemonSet pods: what the work needs and nothing else — per
    namespace with stale pods one pod list, one ReplicaSet list (when ReplicaSets own stale pods:
    the proof of their Deployments), one list per workload kind to restart (marker, resourceVersion
    for the guarded patch, readiness from the generation on), one patch per workload; no GET of any
    single object (the token from the pods' own volumes, the readiness from one watch per kind)."""
    seed.sim("POST", "/_sim/counters/reset")
    run = kmstep(seed, "pods", spec={"includeNamespaces": ["kube-system", "web", "shop"], "namespaceTimeoutSeconds": 120})
    got = requests_by(seed, ("get", "list", "patch", "create", "update", "delete"))
    assert run.rc == 0, run
    st = run.status
    assert st["done"][0] == "kube-system" and sorted(st["done"][1:]) == ["shop", "web"] and st["restarted"] == 6, st
    assert "stuck" not in st, st
    assert got == {
        ("get", "configmaps", ""): 2,                 # the rebuild time (kmstep derives it as the engine does)
        ("list", "namespaces", ""): 1,
        ("list", "pods", ""): 3,                      # kube-system, shop, web
        ("list", "apps/replicasets", ""): 3,          # coredns's, frontend's, blog's pods are ReplicaSets'
        ("list", "apps/deployments", ""): 3,
        ("list", "apps/statefulsets", ""): 1,         # shop: cart-db
        ("list", "apps/daemonsets", ""): 1,           # kube-system: calico-node, kube-proxy
        ("patch", "apps/deployments", ""): 3,
        ("patch", "apps/statefulsets", ""): 1,
        ("patch", "apps/daemonsets", ""): 2,
    }, got
    for kind, ns, name in (("deployments", "web", "blog"), ("deployments", "shop", "frontend"),
                           ("statefulsets", "shop", "cart-db"), ("daemonsets", "kube-system", "kube-proxy")):
        assert_restarted_since(seed, kind, ns, name, rebuilt_at(seed))
    # and it waited for the rollouts (the wait watched from the listed objects)
    d = get(seed, "/apis/apps/v1/namespaces/web/deployments/blog")
    assert d["status"]["observedGeneration"] >= d["metadata"]["generation"]
    assert d["status"].get("updatedReplicas") == d["spec"]["replicas"] == d["status"].get("availableReplicas")


def test_parallel_namespaces_sigkill_resume_each_workload_once_within_the_budget(tmp_path):
    """parallelNamespaces 3 within a global budget of 2 workloads restarting at once: kube-system
    first and alone, then the others side by side (status.pods.current lists them); SIGKILLed
    while namespaces are in progress, the same run again finishes with every pre-rebuild workload
    restarted exactly once (counted from the server) and never more than 2 restarting at once."""
    with SimProcess(scenario="seed", extra_args=["--kubelet-delay", "2"]) as sim:
        settled(sim)
        status_file = str(tmp_path / "status.json")
        spec = {"maxConcurrent": 2, "parallelNamespaces": 3, "namespaceTimeoutSeconds": 120}
        proc = subprocess.Popen(kmstep_args(sim, step="pods", spec=spec, status_file=status_file),
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        seen = []

        def parallel_in_progress():
            try:
                with open(status_file) as f:
                    st = json.load(f)
            except (OSError, ValueError):
                return None
            cur = st.get("current") or []
            seen.append([c["namespace"] for c in cur])
            assert not (len(cur) > 1 and "kube-system" in [c["namespace"] for c in cur]), cur
            return st if len(cur) >= 2 and any(c.get("restarted") for c in cur) else None
        try:
            st = wait_for(parallel_in_progress, timeout=180, interval=0.05, what="two namespaces in progress")
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        assert st["done"][:1] == ["kube-system"], st  # first, and done before any other started

        run = kmstep(sim, "pods", spec=spec, status_file=status_file)
        assert run.rc == 0, run
        st = run.status
        assert st["done"][0] == "kube-system", st
        assert st["current"] == [] and st["namespacesDone"] == st["namespacesTotal"], st
        assert restarts_from_the_server(sim) == {k: 1 for k in SEED_RESTARTS}
        # the global budget, as the step accounted it (a batch takes slots before its PATCHes)
        peaks = [int(m) for m in re.findall(r'peakRestarting=(\d+)', run.stderr)]
        assert peaks and max(peaks) <= 2, run.stderr[-3000:]


def mounted_token_secrets(sim):
    """namespace -> the legacy token Secrets ("<sa>-token-*") its stale pods (non-default ServiceAccounts) mount."""
    mounted = {}
    for p in get(sim, "/api/v1/pods")["items"]:
        if p["spec"].get("serviceAccountName", "default") == "default":
            continue
        for v in p["spec"].get("volumes") or []:
            name = (v.get("secret") or {}).get("secretName", "")
            if "-token-" in name:
                mounted.setdefault(p["metadata"]["namespace"], set()).add(name)
    return mounted


def test_pods_restart_once_the_token_secrets_they_mount_are_refilled_while_the_rest_refill():
    """The tokens step hands the wait for the tokens controller to the end of the recovery (settle), so the
    pods step starts while new tokens are still being written; before it restarts a namespace's workloads it
    waits until the token Secrets their stale pods mount hold a token again (reconcilers/pods/tokengate.h).
    Legacy profile (pods mount "<sa>-token-*" Secret volumes), a tokens controller refilling 2 Secrets per
    second: every workload restart comes after the refill of each regenerated Secret its namespace's pods
    mount, and the first restart comes before the last refill (the two overlap)."""
    with SimProcess(scenario="seed", extra_args=["--profile", "legacy"]) as sim:
        mounted = mounted_token_secrets(sim)
        assert mounted.get("kube-system") and len(mounted) >= 3, mounted
        sim.sim("POST", "/_sim/controllers", {"tokenRate": 2})
        sim.sim("DELETE", "/_sim/writes")
        cp = kmop.run(["run", "--once", "-o", "json", "--kubeconfig", sim.kubeconfig], timeout=600)
        assert cp.returncode == 0, cp.stderr[-3000:]
        conds = {c["type"]: c for c in json.loads(cp.stdout)["conditions"]}
        assert conds["TokensRegenerated"]["status"] == "True", conds
        assert conds["Succeeded"]["status"] == "True" and conds["Verified"]["status"] == "True", conds
        writes = sim.sim("GET", "/_sim/writes")[1]["writes"]
        ours = [w for w in writes if w["user"] == "kubernetes-admin"]
        regenerated = {(w["namespace"], w["name"]) for w in ours if w["resource"] == "secrets" and w["verb"] == "patch"}
        # The simulated tokens controller writes in-process (not in the write log): its refill is the Secret's
        # last change, and resourceVersions come from one cluster-wide counter, as etcd's revisions do.
        refilled = {}
        for ns, name in regenerated:
            sec = get(sim, "/api/v1/namespaces/%s/secrets/%s" % (ns, name))
            assert (sec.get("data") or {}).get("token"), sec["metadata"]
            refilled[(ns, name)] = int(sec["metadata"]["resourceVersion"])
        restarts = [w for w in ours if w["verb"] == "patch" and w["resource"].startswith("apps/")]
        assert restarts
        checked = 0
        for w in restarts:
            for name in mounted.get(w["namespace"], ()):
                key = (w["namespace"], name)
                if key in regenerated:
                    assert refilled[key] < int(w["resourceVersion"]), (w, key, refilled[key])
                    checked += 1
        assert checked, (restarts, regenerated)
        assert min(int(w["resourceVersion"]) for w in restarts) < max(refilled.values()), (restarts, refilled)
        # a namespace not refilled yet did not hold a worker: it was deferred and done after the others
        assert "namespace deferred" in cp.stderr and "the deferred namespaces now" in cp.stderr, cp.stderr[-3000:]


def test_deferred_namespaces_go_in_the_order_their_tokens_are_refilled():
    """The tokens controller does not refill in the namespaces' order (after a PKI rebuild it first rewrites
    every Secret's ca.crt, and a Secret it passed before kubemend's write waits at the back of its queue).
    Legacy profile, 2 workers, four namespaces whose stale pods mount token Secrets: the Secrets are emptied
    (as the tokens step does) in reverse name order — web, shop, monitoring, billing — and refilled one
    every 2 s in that order.  Every namespace is deferred in the first round; then they go on as their
    Secrets are refilled, judged together from one cluster-wide list per poll: web first, billing last.
    (Handed on in name order, the two workers would wait on billing and monitoring while web and shop
    were ready.)"""
    with SimProcess(scenario="seed", extra_args=["--profile", "legacy"]) as sim:
        settled(sim)
        mounted = mounted_token_secrets(sim)
        refill = ["web", "shop", "monitoring", "billing"]
        assert set(refill) <= set(mounted), mounted
        sim.sim("POST", "/_sim/controllers", {"tokenRate": 0.5})
        for ns in refill:
            for name in sorted(mounted[ns]):
                code, _ = sim.request("PATCH", "/api/v1/namespaces/%s/secrets/%s" % (ns, name),
                                      {"data": {"token": None}},
                                      headers={"Content-Type": "application/merge-patch+json"})
                assert code == 200, (ns, name, code)
        sim.sim("DELETE", "/_sim/writes")
        run = kmstep(sim, "pods", spec={"includeNamespaces": refill, "parallelNamespaces": 2,
                                        "namespaceTimeoutSeconds": 120}, timeout=300)
        assert run.rc == 0, run
        assert sorted(run.status["done"]) == sorted(refill), run.status
        pods_lines = [line for line in run.stderr.splitlines() if "pods:" in line]
        deferred = re.findall(r'msg="pods: namespace deferred[^"]*" namespace=(\S+)', run.stderr)
        assert sorted(deferred) == sorted(refill), pods_lines
        writes = sim.sim("GET", "/_sim/writes")[1]["writes"]
        first = []  # namespaces in the order of their first restart or eviction
        for w in writes:
            if w["user"] == "kubernetes-admin" and w["verb"] in ("patch", "create", "delete") and \
                    (w["resource"].startswith("apps/") or w["resource"] == "pods") and w["namespace"] not in first:
                first.append(w["namespace"])
        assert sorted(first) == sorted(refill), (first, writes)
        assert first[0] == "web" and first[-1] == "billing" and first.index("shop") < first.index("monitoring"), \
            (first, pods_lines)
        handed = re.findall(r'msg="pods: deferred namespace refilled" namespace=(\S+)', run.stderr)
        assert handed == refill, (handed, pods_lines)
