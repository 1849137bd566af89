"""Authentication (certs, tokens, TokenReview, JWKS) and RBAC with the real 403 wording."""

import base64
import json
import os
import subprocess

import pytest

from conftest import fixture

RBAC = "/apis/rbac.authorization.k8s.io/v1"


@pytest.fixture(scope="module")
def sa_token(sim):
    """Legacy token of SA authns/norbac, stored in its Secret (as the tokens controller would)."""
    sim.request("POST", "/api/v1/namespaces", {"metadata": {"name": "authns"}})
    st, sa = sim.request("POST", "/api/v1/namespaces/authns/serviceaccounts", {"metadata": {"name": "norbac"}})
    assert st in (201, 409)
    _, sa = sim.request("GET", "/api/v1/namespaces/authns/serviceaccounts/norbac")
    st, tok = sim.sim("POST", "/_sim/token", {"namespace": "authns", "serviceAccount": "norbac",
                                             "secretName": "norbac-token"})
    assert st == 200
    token = tok["token"]
    sim.request("POST", "/api/v1/namespaces/authns/secrets", {
        "metadata": {"name": "norbac-token", "annotations": {
            "kubernetes.io/service-account.name": "norbac",
            "kubernetes.io/service-account.uid": sa["metadata"]["uid"]}},
        "type": "kubernetes.io/service-account-token",
        "data": {"token": base64.b64encode(token.encode()).decode()}})
    return token


def test_anonymous_and_empty_bearer_403(sim):
    want = fixture("error-403-anonymous.json")
    want_msg = want["message"].replace('"app1"', '"authns"')
    st, err = sim.request("GET", "/api/v1/namespaces/authns/secrets", cert=False, token=None,
                          headers={"Authorization": "Bearer "})
    assert st == 403 and err["message"] == want_msg and err["details"] == want["details"]
    import http.client
    conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=sim.ssl_context(client_cert=False))
    conn.request("GET", "/api/v1/namespaces/authns/secrets", headers={"User-Agent": "t"})
    r = conn.getresponse()
    body = json.loads(r.read())
    assert r.status == 403 and body["message"] == want_msg
    assert sim.request("GET", "/version", token="", cert=False)[0] == 200


def test_garbage_token_401_exact(sim):
    st, err = sim.request("GET", "/api/v1/namespaces/authns/secrets", token="not-a-jwt")
    assert st == 401 and err == fixture("error-401-garbage-token.json")


def test_sa_without_rbac_gets_exact_403(sim, sa_token):
    st, err = sim.request("GET", "/api/v1/namespaces/authns/secrets", token=sa_token)
    want = fixture("error-403-sa-no-rbac.json")
    assert st == 403
    assert err["message"] == want["message"].replace("fixtures", "authns").replace("fx-norbac", "norbac")
    assert set(err) == set(want) and err["details"] == want["details"]


def test_forbidden_message_variants(sim, sa_token):
    st, err = sim.request("GET", "/api/v1/namespaces/authns/secrets/x", token=sa_token)
    assert err["message"] == ('secrets "x" is forbidden: User "system:serviceaccount:authns:norbac" cannot get '
                              'resource "secrets" in API group "" in the namespace "authns"')
    assert err["details"] == {"name": "x", "kind": "secrets"}
    st, err = sim.request("GET", "/api/v1/nodes", token=sa_token)
    assert err["message"] == ('nodes is forbidden: User "system:serviceaccount:authns:norbac" cannot list resource '
                              '"nodes" in API group "" at the cluster scope')
    st, err = sim.request("POST", "/api/v1/namespaces/authns/pods/p/eviction", {"apiVersion": "policy/v1",
                                                                               "kind": "Eviction"}, token=sa_token)
    assert err["message"] == ('pods "p" is forbidden: User "system:serviceaccount:authns:norbac" cannot create '
                              'resource "pods/eviction" in API group "" in the namespace "authns"')
    st, err = sim.request("GET", "/apis/apps/v1/namespaces/authns/deployments", token=sa_token)
    assert err["message"].startswith("deployments.apps is forbidden") and err["details"]["group"] == "apps"


def test_rbac_role_binding_allows_and_resource_names(sim, sa_token):
    role = {"metadata": {"name": "cm-reader"}, "rules": [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": ["allowed"]},
        {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}]}
    assert sim.request("POST", RBAC + "/namespaces/authns/roles", role)[0] == 201
    rb = {"metadata": {"name": "cm-reader"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                          "name": "cm-reader"},
          "subjects": [{"kind": "ServiceAccount", "name": "norbac", "namespace": "authns"}]}
    assert sim.request("POST", RBAC + "/namespaces/authns/rolebindings", rb)[0] == 201
    assert sim.request("GET", "/api/v1/namespaces/authns/configmaps", token=sa_token)[0] == 200
    assert sim.request("GET", "/api/v1/namespaces/default/configmaps", token=sa_token)[0] == 403
    assert sim.request("GET", "/api/v1/namespaces/authns/secrets/allowed", token=sa_token)[0] == 404
    assert sim.request("GET", "/api/v1/namespaces/authns/secrets/other", token=sa_token)[0] == 403
    st, _ = sim.request("POST", "/api/v1/namespaces/authns/pods/nopod/eviction",
                        {"apiVersion": "policy/v1beta1", "kind": "Eviction", "metadata": {"name": "nopod"}},
                        token=sa_token)
    assert st == 404
    # kubectl auth can-i through SelfSubjectAccessReview
    kc = sim.token_kubeconfig(sa_token)
    assert sim.kubectl("auth", "can-i", "list", "configmaps", "-n", "authns", kubeconfig=kc).stdout.strip() == "yes"
    cp = sim.kubectl("auth", "can-i", "delete", "configmaps", "-n", "authns", kubeconfig=kc, check=False)
    assert cp.stdout.strip() == "no"


def test_csr_approval_needs_signer_approve(sim, sa_token):
    key = subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                         capture_output=True, check=True).stdout
    csr = subprocess.run(["openssl", "req", "-new", "-key", "/dev/stdin", "-subj", "/O=system:nodes/CN=system:node:n1"],
                         input=key, capture_output=True, check=True).stdout
    body = {"metadata": {"name": "authcsr"}, "spec": {"request": base64.b64encode(csr).decode(),
                                                      "signerName": "kubernetes.io/kubelet-serving",
                                                      "usages": ["digital signature", "server auth"]}}
    st, c = sim.request("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", body)
    assert st == 201 and c["spec"]["username"] == "kubernetes-admin"
    assert c["spec"]["groups"] == ["system:masters", "system:authenticated"]
    cr = {"metadata": {"name": "csr-approver"}, "rules": [
        {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"], "verbs": ["get"]},
        {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests/approval"],
         "verbs": ["update"]}]}
    sim.request("POST", RBAC + "/clusterroles", cr)
    sim.request("POST", RBAC + "/clusterrolebindings", {
        "metadata": {"name": "csr-approver"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                          "kind": "ClusterRole", "name": "csr-approver"},
        "subjects": [{"kind": "ServiceAccount", "name": "norbac", "namespace": "authns"}]})
    c["status"] = {"conditions": [{"type": "Approved", "status": "True", "reason": "Test", "message": "ok"}]}
    path = "/apis/certificates.k8s.io/v1/certificatesigningrequests/authcsr/approval"
    st, err = sim.request("PUT", path, c, token=sa_token)
    assert st == 403
    assert err["message"] == ('certificatesigningrequests.certificates.k8s.io "authcsr" is forbidden: user not '
                              'permitted to approve requests with signerName "kubernetes.io/kubelet-serving"')
    cr["rules"].append({"apiGroups": ["certificates.k8s.io"], "resources": ["signers"], "verbs": ["approve"],
                        "resourceNames": ["kubernetes.io/kubelet-serving"]})
    _, cur = sim.request("GET", RBAC + "/clusterroles/csr-approver")
    cur["rules"] = cr["rules"]
    assert sim.request("PUT", RBAC + "/clusterroles/csr-approver", cur)[0] == 200
    st, out = sim.request("PUT", path, c, token=sa_token)
    assert st == 200 and out["status"]["conditions"][0]["type"] == "Approved"
    assert out["status"]["conditions"][0]["lastUpdateTime"]


def test_tokenreview_and_pki_rebuild(sim, sa_token):
    tr = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": sa_token}}
    st, out = sim.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", tr)
    want = fixture("tokenreview-valid.json")
    assert st == 201 and out["status"]["authenticated"] is True
    assert set(out["status"]) == set(want["status"])
    assert out["status"]["user"]["username"] == "system:serviceaccount:authns:norbac"
    assert out["status"]["user"]["groups"] == ["system:serviceaccounts", "system:serviceaccounts:authns",
                                               "system:authenticated"]
    # JWKS: anonymous 403 (indented), SA 200
    st, text = sim.request("GET", "/openid/v1/jwks", cert=False, raw=True)
    assert st == 403 and text == json.dumps(fixture("oidc-jwks-anonymous.json"), indent=2)
    st, jwks = sim.request("GET", "/openid/v1/jwks", token=sa_token)
    assert st == 200 and sim.last_headers["Content-Type"] == "application/jwk-set+json"
    kid = json.loads(base64.urlsafe_b64decode(sa_token.split(".")[0] + "=="))["kid"]
    assert [k["kid"] for k in jwks["keys"]] == [kid]
    st, cfg = sim.request("GET", "/.well-known/openid-configuration", token=sa_token)
    assert st == 200 and set(cfg) == set(fixture("oidc-openid-configuration.json"))
    # bound token via TokenRequest
    st, treq = sim.request("POST", "/api/v1/namespaces/authns/serviceaccounts/norbac/token",
                           {"spec": {"audiences": ["https://kubernetes.default.svc.cluster.local"],
                                     "expirationSeconds": 3600}})
    assert st == 201 and set(treq["status"]) == {"token", "expirationTimestamp"}
    bound = treq["status"]["token"]
    assert sim.request("GET", "/openid/v1/jwks", token=bound)[0] == 200
    # rebuild: old-key tokens -> 401 exact body and TokenReview error string
    assert sim.sim("POST", "/_sim/pki-rebuild")[0] == 200
    st, err = sim.request("GET", "/api/v1/namespaces/authns/configmaps", token=sa_token)
    assert st == 401 and err == fixture("error-401-old-token.json")
    st, out = sim.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", tr)
    want = fixture("tokenreview-old-key.json")
    assert st == 201 and out["status"] == want["status"]
    _, jwks2 = sim.request("GET", "/openid/v1/jwks")
    assert [k["kid"] for k in jwks2["keys"]] != [kid]
    # the admin client cert (old CA) keeps working; new-key tokens work
    assert sim.request("GET", "/api/v1/namespaces")[0] == 200
    st, tok = sim.sim("POST", "/_sim/token", {"namespace": "authns", "serviceAccount": "norbac",
                                             "secretName": "norbac-token", "key": "old"})
    assert st == 200 and sim.request("GET", "/version", token=tok["token"])[0] == 401


def test_tokenreview_invalidated_when_secret_deleted(sim):
    sim.request("POST", "/api/v1/namespaces/authns/serviceaccounts", {"metadata": {"name": "gone"}})
    _, sa = sim.request("GET", "/api/v1/namespaces/authns/serviceaccounts/gone")
    _, tok = sim.sim("POST", "/_sim/token", {"namespace": "authns", "serviceAccount": "gone",
                                            "secretName": "gone-token"})
    token = tok["token"]
    sim.request("POST", "/api/v1/namespaces/authns/secrets", {
        "metadata": {"name": "gone-token"}, "type": "kubernetes.io/service-account-token",
        "data": {"token": base64.b64encode(token.encode()).decode()}})
    tr = {"spec": {"token": token}}
    assert sim.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", tr)[1]["status"]["authenticated"]
    sim.request("DELETE", "/api/v1/namespaces/authns/secrets/gone-token")
    _, out = sim.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", tr)
    assert out["status"] == fixture("tokenreview-deleted-secret.json")["status"]


def test_client_cert_groups(sim, tmp_path):
    """A node client cert: CN -> user, O -> groups (CSR spec.username/groups as in the fixture)."""
    work = os.path.join(sim.tmp, "work", "pki")
    cas = sorted(f for f in os.listdir(work) if f.startswith("ca-") and f.endswith(".crt"))
    ca_crt = os.path.join(work, cas[-1])
    ca_key = ca_crt[:-4] + ".key"
    key = tmp_path / "n.key"
    crt = tmp_path / "n.crt"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                    str(key)], check=True, capture_output=True)
    csr = subprocess.run(["openssl", "req", "-new", "-key", str(key), "-subj",
                          "/O=system:nodes/CN=system:node:fx-node1"], check=True, capture_output=True).stdout
    ext = tmp_path / "ext"
    ext.write_text("authorityKeyIdentifier=keyid,issuer\nextendedKeyUsage=clientAuth\n")
    subprocess.run(["openssl", "x509", "-req", "-CA", ca_crt, "-CAkey", ca_key, "-set_serial", "7", "-days", "1",
                    "-extfile", str(ext), "-out", str(crt)], input=csr, check=True, capture_output=True)
    import http.client
    import ssl
    ctx = ssl.create_default_context(cafile=sim.ca_file)
    ctx.load_cert_chain(str(crt), str(key))
    conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=ctx)
    req = json.load(open(__import__("conftest").FIXTURES + "/requests/create-csr-kubelet-serving.json"))
    conn.request("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", json.dumps(req),
                 {"Content-Type": "application/json"})
    r = conn.getresponse()
    out = json.loads(r.read())
    want = fixture("create-csr-kubelet-serving.json")
    assert r.status == 201
    assert out["spec"]["username"] == want["spec"]["username"]
    assert out["spec"]["groups"] == want["spec"]["groups"]
    assert "uid" not in out["spec"] and "extra" not in out["spec"] and out["status"] == {}
