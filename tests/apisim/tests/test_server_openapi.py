"""/openapi/v2: a valid empty document, so kubectl's client-side validation passes (it skips kinds the
document does not describe) and `kubectl apply` works without --validate=false."""

import os

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")


def test_openapi_v2_protobuf_and_json(sim):
    st, body = sim.request("GET", "/openapi/v2", headers={
        "Accept": "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"}, raw=True)
    assert st == 200 and body == ""
    assert sim.last_headers["Content-Type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    st, doc = sim.request("GET", "/openapi/v2")
    assert st == 200 and doc["swagger"] == "2.0" and doc["definitions"] == {}


def test_kubectl_apply_validates_without_flag(sim):
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: oa-cfg, namespace: default}\ndata: {a: '%s'}\n"
    cp = sim.kubectl("apply", "-f", "-", input=manifest % "1")
    assert "configmap/oa-cfg created" in cp.stdout
    cp = sim.kubectl("apply", "-f", "-", input=manifest % "2")
    assert "configmap/oa-cfg configured" in cp.stdout
    assert sim.kubectl("get", "cm", "oa-cfg", "-o", "jsonpath={.data.a}").stdout == "2"


def test_kubectl_apply_kustomize_deploy(sim):
    cp = sim.kubectl("apply", "-k", os.path.join(REPO, "crds"))
    assert "customresourcedefinition.apiextensions.k8s.io/clusterrecoveries.kubemend.io" in cp.stdout
    cp = sim.kubectl("apply", "-k", os.path.join(REPO, "deploy"))
    assert "deployment.apps/kubemend" in cp.stdout
    assert sim.kubectl("get", "deploy", "-n", "kubemend-system", "kubemend", "-o", "name").stdout.strip() == \
        "deployment.apps/kubemend"
