"""REST semantics compared with the recorded kube-apiserver fixtures."""

import base64
import json
import time

import pytest

from conftest import fixture, wait_established

MP = {"Content-Type": "application/merge-patch+json"}
JP = {"Content-Type": "application/json-patch+json"}
SMP = {"Content-Type": "application/strategic-merge-patch+json"}


@pytest.fixture(scope="module")
def ns(sim):
    name = "sem"
    st, _ = sim.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert st in (201, 409)
    return name


def keys_equal(ours, theirs):
    assert set(ours) == set(theirs), (sorted(ours), sorted(theirs))


def test_create_get_and_404_409_shapes(sim, ns):
    st, cm = sim.request("POST", "/api/v1/namespaces/%s/configmaps" % ns,
                         {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fx-cm"}, "data": {"a": "1"}})
    assert st == 201
    want = fixture("create-configmap-fx-cm.json")
    assert set(cm["metadata"]) - {"managedFields", "labels"} == set(want["metadata"]) - {"managedFields", "labels"}
    assert cm["metadata"]["resourceVersion"].isdigit()
    st, err = sim.request("POST", "/api/v1/namespaces/%s/configmaps" % ns, {"metadata": {"name": "fx-cm"}})
    want = fixture("error-409-already-exists.json")
    assert st == 409 and err == want
    st, err = sim.request("GET", "/api/v1/namespaces/%s/secrets/fx-missing" % ns)
    assert st == 404 and err == fixture("error-404-secret.json")


def test_stale_rv_conflict_and_update(sim, ns):
    _, cm = sim.request("GET", "/api/v1/namespaces/%s/configmaps/fx-cm" % ns)
    old_rv = cm["metadata"]["resourceVersion"]
    cm["data"] = {"a": "2"}
    st, new = sim.request("PUT", "/api/v1/namespaces/%s/configmaps/fx-cm" % ns, cm)
    assert st == 200 and int(new["metadata"]["resourceVersion"]) > int(old_rv)
    st, err = sim.request("PUT", "/api/v1/namespaces/%s/configmaps/fx-cm" % ns, cm)
    assert st == 409 and err == fixture("error-409-conflict-stale-rv.json")
    # lease: group-qualified message + details.group
    lease = {"metadata": {"name": "fx-lease"}, "spec": {"holderIdentity": "a"}}
    st, l1 = sim.request("POST", "/apis/coordination.k8s.io/v1/namespaces/%s/leases" % ns, lease)
    assert st == 201
    l1["spec"]["holderIdentity"] = "b"
    assert sim.request("PUT", "/apis/coordination.k8s.io/v1/namespaces/%s/leases/fx-lease" % ns, l1)[0] == 200
    st, err = sim.request("PUT", "/apis/coordination.k8s.io/v1/namespaces/%s/leases/fx-lease" % ns, l1)
    assert st == 409 and err == fixture("error-409-lease-stale-rv.json")


def test_422_invalid_configmap_exact(sim, ns):
    body = {"metadata": {"name": "FX_Bad_Name"}, "data": {"bad key!": "x"}}
    st, err = sim.request("POST", "/api/v1/namespaces/%s/configmaps" % ns, body)
    assert st == 422 and err == fixture("error-422-invalid-configmap.json")


def test_events_cluster_scoped_involved_object(sim, ns):
    ev = {"metadata": {"name": "fx-ev-core-node"}, "involvedObject": {"kind": "Node", "name": "n1", "apiVersion": "v1"},
          "reason": "X", "message": "m", "type": "Normal"}
    st, err = sim.request("POST", "/api/v1/namespaces/fixtures/events", ev)
    # namespace 'fixtures' does not exist here; create it first to get the validation error
    if st == 404:
        sim.request("POST", "/api/v1/namespaces", {"metadata": {"name": "fixtures"}})
        st, err = sim.request("POST", "/api/v1/namespaces/fixtures/events", ev)
    assert st == 422 and err == fixture("error-422-event-core-node-in-fixtures.json")
    st, _ = sim.request("POST", "/api/v1/namespaces/default/events", ev)
    assert st == 201
    st, lst = sim.request("GET", "/api/v1/namespaces/default/events?fieldSelector=involvedObject.kind%3DNode%2C"
                                 "involvedObject.name%3Dn1")
    assert st == 200 and [e["metadata"]["name"] for e in lst["items"]] == ["fx-ev-core-node"]


def test_patch_kinds_and_generation(sim, ns):
    dep = json.load(open(__import__("conftest").FIXTURES + "/requests/create-deployment-fx-deploy.json"))
    dep["metadata"]["namespace"] = ns
    st, d = sim.request("POST", "/apis/apps/v1/namespaces/%s/deployments" % ns, dep)
    assert st == 201 and d["metadata"]["generation"] == 1
    assert d["spec"]["strategy"]["type"] == "RollingUpdate" and d["spec"]["revisionHistoryLimit"] == 10
    name = d["metadata"]["name"]
    p = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "t1"}}}}}
    st, d2 = sim.request("PATCH", "/apis/apps/v1/namespaces/%s/deployments/%s" % (ns, name), json.dumps(p), SMP)
    assert st == 200 and d2["metadata"]["generation"] == 2
    assert d2["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"] == "t1"
    assert d2["spec"]["template"]["spec"]["containers"] == d["spec"]["template"]["spec"]["containers"]
    # metadata-only change does not bump generation
    st, d3 = sim.request("PATCH", "/apis/apps/v1/namespaces/%s/deployments/%s" % (ns, name),
                         json.dumps({"metadata": {"labels": {"x": "y"}}}), MP)
    assert st == 200 and d3["metadata"]["generation"] == 2
    # status subresource does not bump generation, main resource ignores status
    st, d4 = sim.request("PATCH", "/apis/apps/v1/namespaces/%s/deployments/%s/status" % (ns, name),
                         json.dumps({"status": {"observedGeneration": 2}}), MP)
    assert st == 200 and d4["status"]["observedGeneration"] == 2 and d4["metadata"]["generation"] == 2
    st, d5 = sim.request("PATCH", "/apis/apps/v1/namespaces/%s/deployments/%s" % (ns, name),
                         json.dumps({"status": {"observedGeneration": 99}}), MP)
    assert st == 200 and d5["status"]["observedGeneration"] == 2


def test_json_patch_test_op_failure_is_422(sim, ns):
    ops = [{"op": "test", "path": "/data/a", "value": "nope"}, {"op": "remove", "path": "/data/a"}]
    st, err = sim.request("PATCH", "/api/v1/namespaces/%s/configmaps/fx-cm" % ns, json.dumps(ops), JP)
    # handlers/patch.go: NewGenericServerResponse(422, ..., isUnexpectedResponse=false) - no causes (1.19, 1.26)
    assert st == 422 and err == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": "the server rejected our request due to an error in our request",
                                  "reason": "Invalid", "details": {}, "code": 422}
    ops[0]["value"] = "2"
    st, cm = sim.request("PATCH", "/api/v1/namespaces/%s/configmaps/fx-cm" % ns, json.dumps(ops), JP)
    assert st == 200 and "a" not in cm.get("data", {})


def test_delete_returns_status_or_object(sim, ns):
    st, s = sim.request("POST", "/api/v1/namespaces/%s/secrets" % ns,
                        {"metadata": {"name": "fx-watched"}, "stringData": {"a": "b"}})
    assert st == 201 and s["data"] == {"a": base64.b64encode(b"b").decode()}
    st, out = sim.request("DELETE", "/api/v1/namespaces/%s/secrets/fx-watched" % ns)
    want = fixture("delete-secret-fx-watched.json")
    assert st == 200 and set(out) == set(want) and out["details"]["uid"] == s["metadata"]["uid"]
    assert out["details"]["kind"] == "secrets" and out["status"] == "Success"
    # unbound pod: deleted at once, object returned with grace 0
    pod = {"metadata": {"name": "unbound"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    assert sim.request("POST", "/api/v1/namespaces/%s/pods" % ns, pod)[0] == 201
    st, out = sim.request("DELETE", "/api/v1/namespaces/%s/pods/unbound" % ns)
    assert st == 200 and out["kind"] == "Pod" and out["metadata"]["deletionGracePeriodSeconds"] == 0
    assert sim.request("GET", "/api/v1/namespaces/%s/pods/unbound" % ns)[0] == 404
    # bound pod: graceful, stays with deletionTimestamp; force delete removes it
    pod["metadata"]["name"] = "bound"
    pod["spec"]["nodeName"] = "node-x"
    assert sim.request("POST", "/api/v1/namespaces/%s/pods" % ns, pod)[0] == 201
    st, out = sim.request("DELETE", "/api/v1/namespaces/%s/pods/bound" % ns)
    assert st == 200 and out["metadata"]["deletionGracePeriodSeconds"] == 30 and out["metadata"]["deletionTimestamp"]
    assert sim.request("GET", "/api/v1/namespaces/%s/pods/bound" % ns)[0] == 200
    st, out = sim.request("DELETE", "/api/v1/namespaces/%s/pods/bound?gracePeriodSeconds=0" % ns)
    assert st == 200 and out["metadata"]["deletionGracePeriodSeconds"] == 0
    assert sim.request("GET", "/api/v1/namespaces/%s/pods/bound" % ns)[0] == 404


def test_delete_preconditions_and_dry_run(sim, ns):
    st, cm = sim.request("POST", "/api/v1/namespaces/%s/configmaps" % ns, {"metadata": {"name": "pre"}})
    assert st == 201
    st, err = sim.request("DELETE", "/api/v1/namespaces/%s/configmaps/pre" % ns,
                          {"preconditions": {"uid": "wrong-uid"}})
    assert st == 409 and err["reason"] == "Conflict"
    # rest.BeforeDelete's check (1.19 and 1.26): the Kind, not the resource
    assert err["message"] == ('Operation cannot be fulfilled on ConfigMap "pre": the UID in the precondition '
                              '(wrong-uid) does not match the UID in record (%s). The object might have been deleted '
                              'and then recreated' % cm["metadata"]["uid"])
    assert err["details"] == {"name": "pre", "kind": "ConfigMap"}
    st, err = sim.request("DELETE", "/api/v1/namespaces/%s/configmaps/pre" % ns,
                          {"preconditions": {"resourceVersion": "1"}})
    assert st == 409 and "the ResourceVersion in the precondition (1) does not match" in err["message"]
    assert sim.request("DELETE", "/api/v1/namespaces/%s/configmaps/pre?dryRun=All" % ns)[0] == 200
    assert sim.request("GET", "/api/v1/namespaces/%s/configmaps/pre" % ns)[0] == 200


def test_finalizers_keep_object_until_removed(sim, ns):
    st, _ = sim.request("POST", "/api/v1/namespaces/%s/configmaps" % ns,
                        {"metadata": {"name": "fin", "finalizers": ["example.com/x"]}})
    assert st == 201
    st, out = sim.request("DELETE", "/api/v1/namespaces/%s/configmaps/fin" % ns)
    assert st == 200 and out["kind"] == "ConfigMap" and out["metadata"]["deletionTimestamp"]
    st, _ = sim.request("PATCH", "/api/v1/namespaces/%s/configmaps/fin" % ns,
                        json.dumps({"metadata": {"finalizers": None}}), MP)
    assert st == 200
    assert sim.request("GET", "/api/v1/namespaces/%s/configmaps/fin" % ns)[0] == 404


def test_owner_gc_background_and_orphan(sim, ns):
    _, owner = sim.request("POST", "/api/v1/namespaces/%s/configmaps" % ns, {"metadata": {"name": "owner"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    sim.request("POST", "/api/v1/namespaces/%s/configmaps" % ns, {"metadata": {"name": "dep", "ownerReferences": [ref]}})
    sim.request("DELETE", "/api/v1/namespaces/%s/configmaps/owner" % ns)
    for _ in range(50):
        if sim.request("GET", "/api/v1/namespaces/%s/configmaps/dep" % ns)[0] == 404:
            break
        time.sleep(0.1)
    assert sim.request("GET", "/api/v1/namespaces/%s/configmaps/dep" % ns)[0] == 404
    _, owner = sim.request("POST", "/api/v1/namespaces/%s/configmaps" % ns, {"metadata": {"name": "owner2"}})
    ref["uid"], ref["name"] = owner["metadata"]["uid"], "owner2"
    sim.request("POST", "/api/v1/namespaces/%s/configmaps" % ns, {"metadata": {"name": "dep2", "ownerReferences": [ref]}})
    sim.request("DELETE", "/api/v1/namespaces/%s/configmaps/owner2?propagationPolicy=Orphan" % ns)
    for _ in range(50):
        if sim.request("GET", "/api/v1/namespaces/%s/configmaps/owner2" % ns)[0] == 404:
            break
        time.sleep(0.1)
    st, dep = sim.request("GET", "/api/v1/namespaces/%s/configmaps/dep2" % ns)
    assert st == 200 and not dep["metadata"].get("ownerReferences")


def test_list_continue_remaining_and_selectors(sim):
    sim.request("POST", "/api/v1/namespaces", {"metadata": {"name": "paging"}})
    for i in range(7):
        sim.request("POST", "/api/v1/namespaces/paging/secrets",
                    {"metadata": {"name": "s%d" % i, "labels": {"i": str(i), "even": str(i % 2 == 0).lower()}},
                     "type": "kubernetes.io/service-account-token" if i < 4 else "Opaque"})
    st, p1 = sim.request("GET", "/api/v1/namespaces/paging/secrets?limit=2")
    assert st == 200 and p1["metadata"]["remainingItemCount"] == 5 and p1["metadata"]["continue"]
    tok = json.loads(base64.urlsafe_b64decode(p1["metadata"]["continue"] + "=="))
    assert tok == {"v": "meta.k8s.io/v1", "rv": int(p1["metadata"]["resourceVersion"]), "start": "s1\u0000"}
    names = [i["metadata"]["name"] for i in p1["items"]]
    cont = p1["metadata"]["continue"]
    while cont:
        st, p = sim.request("GET", "/api/v1/namespaces/paging/secrets?limit=2&continue=" + cont)
        assert st == 200 and p["metadata"]["resourceVersion"] == p1["metadata"]["resourceVersion"]
        names += [i["metadata"]["name"] for i in p["items"]]
        cont = p["metadata"].get("continue")
    assert names == ["s%d" % i for i in range(7)]
    assert "kind" not in p1["items"][0]
    # field selector: no remainingItemCount
    st, f1 = sim.request("GET", "/api/v1/secrets?fieldSelector=type%3Dkubernetes.io%2Fservice-account-token&limit=2")
    assert st == 200 and "remainingItemCount" not in f1["metadata"] and f1["metadata"]["continue"]
    st, f = sim.request("GET", "/api/v1/namespaces/paging/secrets?fieldSelector=type!%3DOpaque")
    assert [i["metadata"]["name"] for i in f["items"]] == ["s0", "s1", "s2", "s3"]
    for sel, want in (("even%3Dtrue", ["s0", "s2", "s4", "s6"]), ("i+in+(1,2)", ["s1", "s2"]),
                      ("i+notin+(1,2),even!%3Dtrue", ["s3", "s5"]), ("!i", []), ("i", ["s%d" % i for i in range(7)]),
                      ("i%3D%3D3", ["s3"])):
        st, r = sim.request("GET", "/api/v1/namespaces/paging/secrets?labelSelector=" + sel)
        assert st == 200 and [i["metadata"]["name"] for i in r["items"]] == want, sel
    st, err = sim.request("GET", "/api/v1/namespaces/paging/secrets?fieldSelector=spec.nodeName%3Dx")
    assert st == 400 and err["message"] == "field label not supported: spec.nodeName"


def test_expired_continue_410_then_inconsistent_token(sim):
    st, p1 = sim.request("GET", "/api/v1/namespaces/paging/secrets?limit=2")
    sim.sim("POST", "/_sim/continue/expire")
    st, err = sim.request("GET", "/api/v1/namespaces/paging/secrets?limit=2&continue=" + p1["metadata"]["continue"])
    want = fixture("error-410-expired-continue.json")
    assert st == 410 and set(err) == set(want) and err["message"] == want["message"] and err["reason"] == "Expired"
    tok = json.loads(base64.urlsafe_b64decode(err["metadata"]["continue"] + "=="))
    assert tok["rv"] == -1 and tok["start"] == "s1\u0000"
    st, p2 = sim.request("GET", "/api/v1/namespaces/paging/secrets?limit=2&continue=" + err["metadata"]["continue"])
    assert st == 200 and [i["metadata"]["name"] for i in p2["items"]] == ["s2", "s3"]


def test_continue_expire_always(sim):
    sim.request("POST", "/api/v1/namespaces", {"metadata": {"name": "paging-always"}})
    for i in range(3):
        sim.request("POST", "/api/v1/namespaces/paging-always/secrets", {"metadata": {"name": "a%d" % i}})
    st, out = sim.sim("POST", "/_sim/continue/expire", {"always": True})
    assert st == 200 and out["always"] is True
    try:
        st, p1 = sim.request("GET", "/api/v1/namespaces/paging-always/secrets?limit=2")
        assert st == 200 and p1["metadata"]["continue"]
        url = "/api/v1/namespaces/paging-always/secrets?limit=2&continue=" + p1["metadata"]["continue"]
        st, err = sim.request("GET", url)
        assert st == 410 and err["reason"] == "Expired"
        st, full = sim.request("GET", "/api/v1/namespaces/paging-always/secrets")
        assert st == 200 and len(full["items"]) == 3 and not full["metadata"].get("continue")
    finally:
        sim.sim("POST", "/_sim/continue/expire", {"always": False})
    st, p1 = sim.request("GET", "/api/v1/namespaces/paging-always/secrets?limit=2")
    url = "/api/v1/namespaces/paging-always/secrets?limit=2&continue=" + p1["metadata"]["continue"]
    st, p2 = sim.request("GET", url)
    assert st == 200


def test_pods_field_selectors(sim, ns):
    for name, node, sa in (("fs1", "n1", "default"), ("fs2", "n2", "other")):
        sim.request("POST", "/api/v1/namespaces/%s/pods" % ns, {"metadata": {"name": name}, "spec": {
            "nodeName": node, "serviceAccountName": sa, "containers": [{"name": "c", "image": "x"}]}})
    st, r = sim.request("GET", "/api/v1/namespaces/%s/pods?fieldSelector=spec.serviceAccountName!%%3Ddefault" % ns)
    assert [p["metadata"]["name"] for p in r["items"]] == ["fs2"]
    st, r = sim.request("GET", "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1,status.phase%3DPending")
    assert [p["metadata"]["name"] for p in r["items"]] == ["fs1"]


def test_crd_lifecycle_table_and_415(sim):
    crd = json.load(open(__import__("conftest").FIXTURES + "/requests/create-crd-fxrecoveries.json"))
    st, out = sim.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    # the create response: names not yet accepted, no conditions (as the real server)
    assert st == 201 and out["status"]["conditions"] is None and out["spec"]["conversion"] == {"strategy": "None"}
    got = wait_established(sim, crd["metadata"]["name"])
    conds = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    assert conds["Established"] == "True" and conds["NamesAccepted"] == "True"
    grp = crd["spec"]["group"]
    ver = crd["spec"]["versions"][0]["name"]
    st, disc = sim.request("GET", "/apis/%s/%s" % (grp, ver))
    want = fixture("discovery-apis-fx-v1alpha1.json")
    assert st == 200 and [r["name"] for r in disc["resources"]] == [r["name"] for r in want["resources"]]
    assert disc["resources"][0]["shortNames"] == want["resources"][0]["shortNames"]
    cr = json.load(open(__import__("conftest").FIXTURES + "/requests/create-fxrecovery-fx-rec1.json"))
    base = "/apis/%s/%s/fxrecoveries" % (grp, ver)
    st, c = sim.request("POST", base, cr)
    assert st == 201 and "status" not in c and c["metadata"]["generation"] == 1
    st, c = sim.request("PATCH", base + "/fx-rec1/status",
                        json.dumps({"status": {"phase": "Recovering", "observedGeneration": 1}}), MP)
    assert st == 200 and c["status"]["phase"] == "Recovering" and c["metadata"]["generation"] == 1
    st, err = sim.request("PATCH", base + "/fx-rec1", json.dumps({"spec": {"target": "x"}}), SMP)
    assert st == 415 and err == fixture("error-415-strategic-merge-patch-cr.json")
    st, c = sim.request("PATCH", base + "/fx-rec1", json.dumps({"spec": {"target": "other-ns"}}), MP)
    assert st == 200 and c["metadata"]["generation"] == 2 and c["status"]["phase"] == "Recovering"
    st, t = sim.request("GET", base, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    want = fixture("table-fxrecoveries.json")
    assert st == 200 and t["kind"] == "Table"
    assert [c["name"] for c in t["columnDefinitions"]] == [c["name"] for c in want["columnDefinitions"]]
    assert t["rows"][0]["cells"][:3] == ["fx-rec1", "Recovering", "other-ns"]
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    out = sim.kubectl("get", "fxr").stdout.split("\n")[0].split()
    assert out == ["NAME", "PHASE", "TARGET", "AGE"]
    st, d = sim.request("DELETE", base + "/fx-rec1")
    want = fixture("delete-fxrecovery-fx-rec1.json")
    assert st == 200 and set(d["details"]) == set(want["details"]) and d["details"]["group"] == grp
    st, d = sim.request("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + crd["metadata"]["name"])
    assert st == 200 and d["kind"] == "CustomResourceDefinition" and d["metadata"]["deletionTimestamp"]
    for _ in range(50):
        if sim.request("GET", "/apis/%s/%s" % (grp, ver))[0] == 404:
            break
        time.sleep(0.1)
    assert sim.request("GET", "/apis/%s/%s" % (grp, ver))[0] == 404


def test_builtin_table_secrets(sim):
    st, t = sim.request("GET", "/api/v1/namespaces/paging/secrets",
                        headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    want = fixture("table-secrets-fixtures.json")
    assert st == 200 and set(t) == set(want)
    assert [c["name"] for c in t["columnDefinitions"]] == [c["name"] for c in want["columnDefinitions"]]
    assert t["rows"][0]["cells"][:3] == ["s0", "kubernetes.io/service-account-token", 0]
    assert set(t["rows"][0]["object"]) == set(want["rows"][0]["object"])


def test_namespace_delete_terminating_then_gone(sim):
    sim.request("POST", "/api/v1/namespaces", {"metadata": {"name": "doomed"}})
    sim.request("POST", "/api/v1/namespaces/doomed/configmaps", {"metadata": {"name": "c"}})
    st, out = sim.request("DELETE", "/api/v1/namespaces/doomed")
    assert st == 200 and out["kind"] == "Namespace" and out["status"]["phase"] == "Terminating"
    for _ in range(50):
        if sim.request("GET", "/api/v1/namespaces/doomed")[0] == 404:
            break
        time.sleep(0.1)
    assert sim.request("GET", "/api/v1/namespaces/doomed")[0] == 404
    assert sim.request("GET", "/api/v1/namespaces/doomed/configmaps/c")[0] == 404


def test_create_in_missing_namespace_404(sim):
    st, err = sim.request("POST", "/api/v1/namespaces/nope/configmaps", {"metadata": {"name": "x"}})
    assert st == 404 and err["message"] == 'namespaces "nope" not found'


def test_crd_schema_defaults_versions_and_namespaced_scope(sim):
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "widgets.ex.com"},
           "spec": {"group": "ex.com", "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
                    "versions": [
                        {"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                         "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                             "spec": {"type": "object", "default": {}, "properties": {
                                 "size": {"type": "integer", "default": 3},
                                 "mode": {"type": "string", "default": "auto"}}}}}}},
                        {"name": "v1beta1", "served": True, "storage": False,
                         "schema": {"openAPIV3Schema": {"type": "object",
                                                        "x-kubernetes-preserve-unknown-fields": True}}}]}}
    assert sim.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)[0] == 201
    wait_established(sim, "widgets.ex.com")
    st, w = sim.request("POST", "/apis/ex.com/v1/namespaces/default/widgets",
                        {"apiVersion": "ex.com/v1", "kind": "Widget", "metadata": {"name": "w1"},
                         "spec": {"mode": "manual"}})
    assert st == 201 and w["spec"] == {"mode": "manual", "size": 3}
    st, w2 = sim.request("GET", "/apis/ex.com/v1beta1/namespaces/default/widgets/w1")
    assert st == 200 and w2["apiVersion"] == "ex.com/v1beta1" and w2["spec"]["size"] == 3
    assert sim.request("GET", "/apis/ex.com/v1/widgets")[0] == 200  # all-namespaces list
    assert "w1" in sim.kubectl("get", "wd", "-n", "default").stdout


def test_bad_requests(sim, ns):
    st, err = sim.request("POST", "/api/v1/namespaces/%s/configmaps" % ns,
                          {"metadata": {"name": "x", "namespace": "other"}})
    assert st == 400 and err["reason"] == "BadRequest"
    assert err["message"] == "the namespace of the provided object does not match the namespace sent on the request"
    st, err = sim.request("POST", "/api/v1/namespaces/%s/configmaps/x" % ns, {"metadata": {"name": "x"}})
    assert st == 405 and err["reason"] == "MethodNotAllowed"
    st, err = sim.request("POST", "/api/v1/namespaces/%s/configmaps" % ns, "{not json")
    assert st == 400
    st, err = sim.request("GET", "/api/v1/namespaces/%s/secrets?watch=1&resourceVersionMatch=NotOlderThan" % ns)
    assert st == 422 and err == fixture("error-422-watchlist-params.json")
