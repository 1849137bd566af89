"""User impersonation (Impersonate-User / -Group headers, kubectl --as) as the real impersonation filter."""

from test_server_auth import sa_token  # noqa: F401  (fixture)


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


def test_impersonation_needs_the_impersonate_verb(sim, sa_token):  # noqa: F811
    st, body = sim.request("GET", "/api/v1/namespaces/default/secrets", token=sa_token,
                           headers={"Impersonate-User": "system:admin", "Impersonate-Group": "system:masters"})
    assert st == 403
    assert body["reason"] == "Forbidden"
    assert body["message"] == ('users "system:admin" is forbidden: User "system:serviceaccount:authns:norbac" '
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
