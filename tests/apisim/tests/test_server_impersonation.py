"""User impersonation (Impersonate-User / -Group headers, kubectl --as) as the real impersonation filter."""

import pytest


@pytest.fixture
def own_sa_token(sim):
    """A fresh legacy token of SA impns/imp (its own Secret), valid whatever other tests did to the PKI."""
    sim.request("POST", "/api/v1/namespaces", {"metadata": {"name": "impns"}})
    sim.request("POST", "/api/v1/namespaces/impns/serviceaccounts", {"metadata": {"name": "imp"}})
    _, sa = sim.request("GET", "/api/v1/namespaces/impns/serviceaccounts/imp")
    sim.request("DELETE", "/api/v1/namespaces/impns/secrets/imp-token")
    st, tok = sim.sim("POST", "/_sim/token", {"namespace": "impns", "serviceAccount": "imp", "secretName": "imp-token"})
    assert st == 200
    import base64
    st, _ = sim.request("POST", "/api/v1/namespaces/impns/secrets", {
        "metadata": {"name": "imp-token", "annotations": {"kubernetes.io/service-account.name": "imp",
                                                          "kubernetes.io/service-account.uid": sa["metadata"]["uid"]}},
        "type": "kubernetes.io/service-account-token",
        "data": {"token": base64.b64encode(tok["token"].encode()).decode()}})
    assert st == 201
    return tok["token"]


def test_admin_impersonates_node_for_csr(sim):
    csr = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
           "metadata": {"name": "imp-node-csr"},
           "spec": {"request": "bm90LWEtY3Ny", "signerName": "kubernetes.io/kubelet-serving",
                    "usages": ["server auth"]}}
    st, obj = sim.request("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", csr,
                          headers={"Impersonate-User": "system:node:imp1", "Impersonate-Group": "system:nodes"})
    assert st == 201, obj
    assert obj["spec"]["username"] == "system:node:imp1"
    assert obj["spec"]["groups"] == ["system:nodes", "system:authenticated"]


def test_impersonated_user_is_authorized_as_itself(sim):
    # an unprivileged impersonated user cannot list secrets although the requester (admin) could
    st, body = sim.request("GET", "/api/v1/namespaces/default/secrets", headers={"Impersonate-User": "jane"})
    assert st == 403
    assert body["message"] == ('secrets is forbidden: User "jane" cannot list resource "secrets" in API group "" '
                               'in the namespace "default"')


def test_impersonation_needs_the_impersonate_verb(sim, own_sa_token):
    st, body = sim.request("GET", "/api/v1/namespaces/default/secrets", token=own_sa_token,
                           headers={"Impersonate-User": "system:admin", "Impersonate-Group": "system:masters"})
    assert st == 403
    assert body["reason"] == "Forbidden"
    assert body["message"] == ('users "system:admin" is forbidden: User "system:serviceaccount:impns:imp" '
                               'cannot impersonate resource "users" in API group "" at the cluster scope')


def test_group_without_user_is_rejected(sim):
    st, body = sim.request("GET", "/api/v1/namespaces", headers={"Impersonate-Group": "system:masters"})
    assert st == 400
    assert "without impersonating a user" in body["message"]


def test_kubectl_as(sim):
    cp = sim.kubectl("auth", "can-i", "list", "secrets", "--as", "jane", check=False)
    assert cp.stdout.strip() == "no"
    cp = sim.kubectl("auth", "can-i", "list", "secrets", "--as", "jane", "--as-group", "system:masters", check=False)
    assert cp.stdout.strip() == "yes"
