"""Tokens controller, serviceaccounts controller and ServiceAccount admission (in-process, against Store + PKI)."""

import base64
import json

import pytest

from apisim.controllers import ANN_SA_NAME, ANN_SA_UID, SA_TOKEN, local_sim, wait_for
from apisim.pki import b64url_decode
from conftest import fixture


def jwt_parts(token_b64):
    tok = base64.b64decode(token_b64).decode()
    h, p, _ = tok.split(".")
    return json.loads(b64url_decode(h)), json.loads(b64url_decode(p)), tok


@pytest.fixture
def modern():
    sim = local_sim(profile="modern")
    yield sim
    sim.controllers.stop()


@pytest.fixture
def legacy():
    sim = local_sim(profile="legacy")
    yield sim
    sim.controllers.stop()


def make_ns_sa(sim, ns="app", sa="worker"):
    s = sim.store
    if s.get("namespaces", None, ns) is None:
        s.create("namespaces", {"metadata": {"name": ns}})
    return s.create("serviceaccounts", {"metadata": {"name": sa, "namespace": ns}})


def token_secret(sim, name, sa, ns="app", data=None, uid=None):
    ann = {ANN_SA_NAME: sa}
    if uid:
        ann[ANN_SA_UID] = uid
    return sim.store.create("secrets", {"metadata": {"name": name, "namespace": ns, "annotations": ann},
                                        "type": SA_TOKEN, "data": data or {}})


def test_fills_token_with_real_legacy_claims(modern):
    sa = make_ns_sa(modern)
    token_secret(modern, "worker-manual", "worker")
    sec = wait_for(lambda: (modern.store.get("secrets", "app", "worker-manual").get("data") or {}).get("token")
                   and modern.store.get("secrets", "app", "worker-manual"))
    header, claims, tok = jwt_parts(sec["data"]["token"])
    want = jwt_parts(fixture("get-secret-fx-sa-token.json")["data"]["token"])[1]
    assert list(claims) == list(want)  # same claims, same order as the real legacy token
    assert claims["kubernetes.io/serviceaccount/secret.name"] == "worker-manual"
    assert claims["kubernetes.io/serviceaccount/service-account.uid"] == sa["metadata"]["uid"]
    assert claims["sub"] == "system:serviceaccount:app:worker"
    assert header == {"alg": "ES256", "kid": modern.pki.current_sa_key.kid}
    assert modern.pki.verify_jwt(tok) is not None
    assert base64.b64decode(sec["data"]["ca.crt"]).decode() == modern.pki.ca_cert_pem
    assert base64.b64decode(sec["data"]["namespace"]) == b"app"
    assert sec["metadata"]["annotations"][ANN_SA_UID] == sa["metadata"]["uid"]


def test_refills_blanked_token_identically_and_never_resigns_after_rebuild(modern):
    make_ns_sa(modern)
    token_secret(modern, "w1", "worker")
    first = wait_for(lambda: (modern.store.get("secrets", "app", "w1").get("data") or {}).get("token"))

    def blank(o):
        del o["data"]["token"]
    modern.store.mutate("secrets", "app", "w1", blank)
    again = wait_for(lambda: (modern.store.get("secrets", "app", "w1").get("data") or {}).get("token"))
    # legacy tokens have no iat/exp: same header and claims (byte-identical with RS256; ES256 signatures are random)
    assert jwt_parts(again)[:2] == jwt_parts(first)[:2]
    old_ca = modern.pki.ca_cert_pem
    modern.pki.rebuild()
    new_ca_b64 = base64.b64encode(modern.pki.ca_cert_pem.encode()).decode()
    sec = wait_for(lambda: modern.store.get("secrets", "app", "w1")["data"]["ca.crt"] == new_ca_b64
                   and modern.store.get("secrets", "app", "w1"))
    assert sec["data"]["token"] == again  # never re-signed: still the old-key token
    assert modern.pki.verify_jwt(jwt_parts(sec["data"]["token"])[2]) is None
    assert modern.pki.ca_cert_pem != old_ca


def test_deletes_token_of_missing_or_recreated_serviceaccount(modern):
    sa = make_ns_sa(modern)
    token_secret(modern, "orphan", "ghost")
    token_secret(modern, "wrong-uid", "worker", uid="00000000-0000-0000-0000-000000000000")
    token_secret(modern, "right-uid", "worker", uid=sa["metadata"]["uid"])
    wait_for(lambda: modern.store.get("secrets", "app", "orphan") is None)
    wait_for(lambda: modern.store.get("secrets", "app", "wrong-uid") is None)
    wait_for(lambda: (modern.store.get("secrets", "app", "right-uid").get("data") or {}).get("token"))
    modern.store.delete("serviceaccounts", "app", "worker")
    wait_for(lambda: modern.store.get("secrets", "app", "right-uid") is None)


def test_modern_profile_creates_no_token_secrets(modern):
    make_ns_sa(modern)
    wait_for(lambda: modern.store.get("serviceaccounts", "app", "default"))
    modern.controllers.wait_idle()
    assert [s for s in modern.store.list("secrets", "app") if s.get("type") == SA_TOKEN] == []
    assert "secrets" not in modern.store.get("serviceaccounts", "app", "worker")


def test_legacy_profile_autocreates_and_recreates_token_secret(legacy):
    make_ns_sa(legacy)
    sa = wait_for(lambda: legacy.store.get("serviceaccounts", "app", "worker").get("secrets") and
                  legacy.store.get("serviceaccounts", "app", "worker"))
    assert len(sa["secrets"]) == 1
    name = sa["secrets"][0]["name"]
    assert name.startswith("worker-token-") and len(name) == len("worker-token-") + 5
    sec = legacy.store.get("secrets", "app", name)
    assert sec["type"] == SA_TOKEN and jwt_parts(sec["data"]["token"])[1][
        "kubernetes.io/serviceaccount/secret.name"] == name
    legacy.store.delete("secrets", "app", name)

    def recreated():
        refs = legacy.store.get("serviceaccounts", "app", "worker").get("secrets") or []
        return len(refs) == 1 and refs[0]["name"] != name and refs[0]["name"]
    new = wait_for(recreated)
    assert new.startswith("worker-token-")
    assert legacy.store.get("secrets", "app", new) is not None
    assert legacy.store.get("secrets", "app", name) is None


def pod(name, sa=None, automount=None, ns="app"):
    spec = {"containers": [{"name": "c", "image": "x:1"}]}
    if sa:
        spec["serviceAccountName"] = sa
    if automount is not None:
        spec["automountServiceAccountToken"] = automount
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def test_admission_modern_projected_volume_and_default_sa(modern):
    make_ns_sa(modern)
    p = modern.controllers.admit_pod(pod("p1"))
    assert p["spec"]["serviceAccountName"] == "default" and p["spec"]["serviceAccount"] == "default"
    vols = p["spec"]["volumes"]
    assert len(vols) == 1 and vols[0]["name"].startswith("kube-api-access-")
    assert vols[0]["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"] == 3607
    mounts = p["spec"]["containers"][0]["volumeMounts"]
    assert mounts == [{"name": vols[0]["name"], "readOnly": True,
                       "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
    assert {t["key"] for t in p["spec"]["tolerations"]} == {"node.kubernetes.io/not-ready",
                                                            "node.kubernetes.io/unreachable"}
    # idempotent: a second admission adds nothing
    again = modern.controllers.admit_pod(p)
    assert len(again["spec"]["volumes"]) == 1 and len(again["spec"]["tolerations"]) == 2


def test_admission_legacy_secret_volume_like_fixture(legacy):
    make_ns_sa(legacy)
    p = legacy.controllers.admit_pod(pod("p1", sa="worker"))
    fx = fixture("create-pod-fx-pod1.json")["spec"]
    vol = p["spec"]["volumes"][0]
    assert set(vol) == set(fx["volumes"][0]) and vol["name"].startswith("worker-token-")
    assert vol["secret"] == {"secretName": vol["name"], "defaultMode": 420}
    assert p["spec"]["containers"][0]["volumeMounts"][0] == dict(fx["containers"][0]["volumeMounts"][0],
                                                                 name=vol["name"])
    assert p["spec"]["tolerations"] == fx["tolerations"]


def test_admission_respects_automount_false_and_missing_sa(modern):
    make_ns_sa(modern)
    modern.store.create("serviceaccounts", {"metadata": {"name": "quiet", "namespace": "app"},
                                            "automountServiceAccountToken": False})
    assert "volumes" not in modern.controllers.admit_pod(pod("a", sa="worker", automount=False))["spec"]
    assert "volumes" not in modern.controllers.admit_pod(pod("b", sa="quiet"))["spec"]
    assert modern.controllers.admit_pod(pod("c", sa="quiet", automount=True))["spec"]["volumes"]
    from apisim.errors import ApiError
    with pytest.raises(ApiError) as e:
        modern.controllers.admit_pod(pod("d", sa="nope"))
    assert e.value.code == 403
    assert 'error looking up service account app/nope: serviceaccount "nope" not found' in e.value.message
