"""Pods created over HTTP go through the controllers' ServiceAccount admission: the profile decides the token
volume (legacy secret volume vs. projected kube-api-access), automount false is honoured, a missing
ServiceAccount is rejected like the real admission plugin."""

import pytest

from apisim.testing import SimProcess

SA_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def pod(name, sa=None, automount=None):
    spec = {"containers": [{"name": "c", "image": "busybox"}]}
    if sa:
        spec["serviceAccountName"] = sa
    if automount is not None:
        spec["automountServiceAccountToken"] = automount
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


@pytest.fixture(scope="module", params=["legacy", "modern"])
def profiled(request):
    with SimProcess(extra_args=["--profile", request.param, "--kubelet-delay", "0"]) as s:
        s.request("POST", "/api/v1/namespaces", {"metadata": {"name": "adm"}})
        st, _ = s.request("POST", "/api/v1/namespaces/adm/serviceaccounts", {"metadata": {"name": "worker"}})
        assert st == 201
        yield request.param, s


def test_token_volume_follows_profile(profiled):
    profile, sim = profiled
    st, p = sim.request("POST", "/api/v1/namespaces/adm/pods", pod("p1", "worker"))
    assert st == 201, p
    vols = p["spec"]["volumes"]
    mounts = p["spec"]["containers"][0]["volumeMounts"]
    assert [m["mountPath"] for m in mounts] == [SA_PATH]
    if profile == "legacy":
        assert vols[0]["name"].startswith("worker-token-") and vols[0]["secret"]["secretName"] == vols[0]["name"]
    else:
        assert vols[0]["name"].startswith("kube-api-access-")
        assert vols[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 3607


def test_automount_false_and_missing_sa(profiled):
    _, sim = profiled
    st, p = sim.request("POST", "/api/v1/namespaces/adm/pods", pod("p2", "worker", automount=False))
    assert st == 201 and not p["spec"].get("volumes")
    st, body = sim.request("POST", "/api/v1/namespaces/adm/pods", pod("p3", "ghost"))
    assert st == 403
    assert 'serviceaccount "ghost" not found' in body["message"]
