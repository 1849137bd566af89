"""tests/e2e/rbac.py offline (no server): the least-privilege check that tests/e2e runs on the real server's audit
log (issue 16 item 7), fed with synthetic audit events, so that it is shown to fail on each defect it exists for:
a denied call, a call deploy/ does not grant, a rule never exercised, a stale exemption."""

import copy
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))

import rbac  # noqa: E402


def event(verb, group, resource, namespace=None, name=None, code=200, uri=None):
    res, _, sub = resource.partition("/")
    ref = {"resource": res, "apiGroup": group, "apiVersion": "v1"}
    if sub:
        ref["subresource"] = sub
    if namespace:
        ref["namespace"] = namespace
    if name:
        ref["name"] = name
    return {"verb": verb, "objectRef": ref, "responseStatus": {"code": code},
            "requestURI": uri or "/apis/%s/%s" % (group or "core", resource),
            "annotations": {"authorization.k8s.io/decision": "allow" if code != 403 else "forbid"}}


def nonresource(verb, path, code=200):
    return {"verb": verb, "requestURI": path, "responseStatus": {"code": code}}


@pytest.fixture(scope="module")
def objs():
    return rbac.load_objects()


@pytest.fixture(scope="module")
def complete(objs):
    """One successful call per grant of deploy/ that is neither exempt nor implied (+ the approval update that
    implies the kubelet-serving signer)."""
    evs = []
    for (scope, verb, group, res, name) in rbac.grants(objs):
        key = (scope, verb, group, res, name)
        if key in rbac.EXEMPT or key in rbac.IMPLIED:
            continue
        if scope == "nonResource":
            evs.append(nonresource(verb, res))
        else:
            evs.append(event(verb, group, res, None if scope == "cluster" else scope, name or "x"))
    return evs


def test_deploy_rbac_is_covered_by_its_calls(objs, complete):
    assert rbac.check(objs, complete) == []


def test_every_exemption_is_granted_and_explained(objs):
    g = rbac.grants(objs)
    for grant, why in rbac.EXEMPT.items():
        assert grant in g, grant
        assert why.startswith((rbac.OPT_IN, rbac.FALLBACK)), why


def test_a_rule_never_exercised_is_named(objs, complete):
    evs = [e for e in complete if not (e.get("objectRef", {}).get("resource") == "namespaces")]
    assert rbac.check(objs, evs) == [
        "unused rule: list namespaces cluster-wide (ClusterRole kubemend) - remove it, or list it in "
        "tests/e2e/rbac.py EXEMPT with the reason"]


def test_a_denied_call_is_a_missing_rule(objs, complete):
    evs = complete + [event("update", "", "configmaps", "kube-public", "cluster-info", code=403)]
    assert rbac.check(objs, evs) == [
        "missing rule: update configmaps in kube-public name=cluster-info -> 403 (denied by the server)"]


def test_a_call_allowed_only_outside_deploy_is_a_missing_rule(objs, complete):
    evs = complete + [event("list", "", "configmaps", "kube-system"), nonresource("get", "/version")]
    assert rbac.check(objs, evs) == [
        "missing rule: list configmaps in kube-system -> 200 (allowed, but not by deploy/)"]


def test_a_role_grant_needs_a_call_in_its_namespace(objs, complete):
    evs = [e for e in complete if e.get("objectRef", {}).get("resource") != "leases"]
    evs += [event(v, "coordination.k8s.io", "leases", "kube-system", "kubemend") for v in ("get", "create", "update")]
    findings = rbac.check(objs, evs)
    assert any(f.startswith("unused rule: get coordination.k8s.io/leases in kubemend-system") for f in findings)
    assert any(f.startswith("missing rule: get coordination.k8s.io/leases in kube-system") for f in findings)


def test_field_selector_name_counts_as_the_name(objs, complete):
    evs = complete + [event("list", "", "configmaps", "ns1", code=200,
                            uri="/api/v1/namespaces/ns1/configmaps?fieldSelector=metadata.name%3Dkube-root-ca.crt")]
    assert [f for f in rbac.check(objs, evs) if "kube-root-ca" in f] == [
        "missing rule: list configmaps in ns1 name=kube-root-ca.crt -> 200 (allowed, but not by deploy/)"]


def test_an_exercised_exemption_is_stale(objs, complete):
    evs = complete + [event("delete", "", "pods", "ns1", "p")]
    assert rbac.check(objs, evs) == [
        "stale exemption: delete pods cluster-wide (%s) was exercised" % rbac.EXEMPT[("cluster", "delete", "", "pods",
                                                                                      None)]]


def test_an_exercised_fallback_is_fine(objs, complete):
    evs = complete + [event("get", "apps", "deployments", "ns1", "d")]  # a re-read after a 409 happened
    assert rbac.check(objs, evs) == []


def test_an_exemption_deploy_no_longer_grants_is_stale(objs, complete):
    exempt = dict(rbac.EXEMPT)
    exempt[("cluster", "watch", "", "secrets", None)] = "gone"
    assert rbac.check(objs, complete, exempt=exempt) == [
        "stale exemption: watch secrets cluster-wide (gone) is not granted by deploy/"]


def test_implied_signer_needs_a_successful_approval(objs, complete):
    evs = [e for e in complete if e.get("objectRef", {}).get("subresource") != "approval"]
    findings = rbac.check(objs, evs)
    assert any("unused rule: approve certificates.k8s.io/signers/kubernetes.io/kubelet-serving" in f
               for f in findings), findings
    assert any("unused rule: update certificates.k8s.io/certificatesigningrequests/approval" in f
               for f in findings), findings


def test_a_new_rule_without_a_call_fails(objs, complete):
    more = copy.deepcopy(objs)
    cr = next(o for o in more if o["kind"] == "ClusterRole" and o["metadata"]["name"] == "kubemend")
    cr["rules"].append({"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]})
    assert rbac.check(more, complete) == [
        "unused rule: list configmaps cluster-wide (ClusterRole kubemend) - remove it, or list it in "
        "tests/e2e/rbac.py EXEMPT with the reason"]
