"""Process, discovery and kubectl round trips against the bare simulator."""

import json
import ssl
import http.client

from conftest import fixture
from apisim.testing import SimProcess


def test_version_is_indented_and_has_fixture_keys(sim):
    status, text = sim.request("GET", "/version", raw=True)
    assert status == 200
    assert text.startswith("{\n  ")
    assert set(json.loads(text)) == set(fixture("discovery-version.json"))


def test_compact_json_with_newline_for_client_go_ua(sim):
    status, text = sim.request("GET", "/api/v1/namespaces/default", raw=True)
    assert status == 200
    assert text.endswith("}\n") and "\n" not in text[:-1]
    status, text = sim.request("GET", "/api/v1/namespaces/default", raw=True, headers={"User-Agent": "curl/8"})
    assert text.startswith("{\n")


def test_discovery_shapes_match_fixtures(sim):
    for path, fx in (("/api", "discovery-api.json"), ("/api/v1", "discovery-api-v1.json"),
                     ("/apis", "discovery-apis.json"), ("/apis/apps/v1", "discovery-apis-apps-v1.json"),
                     ("/apis/certificates.k8s.io/v1", "discovery-apis-certificates-v1.json"),
                     ("/apis/coordination.k8s.io/v1", "discovery-apis-coordination-v1.json")):
        status, body = sim.request("GET", path)
        assert status == 200, path
        want = fixture(fx)
        assert set(body) == set(want), path
        assert body["kind"] == want["kind"]
    _, v1 = sim.request("GET", "/api/v1")
    by = {r["name"]: r for r in v1["resources"]}
    want = {r["name"]: r for r in fixture("discovery-api-v1.json")["resources"]}
    for name in ("pods", "secrets", "configmaps", "serviceaccounts", "namespaces", "nodes", "events",
                 "pods/status", "serviceaccounts/token"):
        assert by[name]["verbs"] == want[name]["verbs"], name
        assert by[name]["namespaced"] == want[name]["namespaced"]
        assert by[name].get("shortNames") == want[name].get("shortNames")
    assert by["pods/eviction"]["group"] == "policy"
    _, csr = sim.request("GET", "/apis/certificates.k8s.io/v1")
    names = {r["name"] for r in csr["resources"]}
    assert {"certificatesigningrequests", "certificatesigningrequests/approval",
            "certificatesigningrequests/status"} <= names


def test_modern_serves_what_1_26_serves(modern_sim):
    sim = modern_sim
    assert sim.request("GET", "/version")[1]["minor"] == "26"
    assert sim.request("GET", "/apis/policy/v1")[0] == 200
    for gone in ("/apis/policy/v1beta1", "/apis/events.k8s.io/v1beta1", "/apis/batch/v1beta1",
                 "/apis/policy/v1beta1/namespaces/default/poddisruptionbudgets"):
        status, body = sim.request("GET", gone)
        assert status == 404 and body["reason"] == "NotFound" and body["details"] == {}, gone
    _, v1 = sim.request("GET", "/api/v1")
    ev = next(r for r in v1["resources"] if r["name"] == "pods/eviction")
    assert (ev["group"], ev["version"]) == ("policy", "v1")
    status, body = sim.request("GET", "/apis/nosuch.example.com/v1")
    assert status == 404 and body["reason"] == "NotFound" and body["details"] == {}


def test_legacy_serves_what_1_19_serves():
    with SimProcess(extra_args=["--profile", "legacy"]) as s:
        assert s.request("GET", "/version")[1]["minor"] == "19"
        _, apis = s.request("GET", "/apis")
        groups = {g["name"]: [v["version"] for v in g["versions"]] for g in apis["groups"]}
        assert groups["policy"] == ["v1beta1"]
        assert groups["events.k8s.io"] == ["v1", "v1beta1"]
        assert s.request("GET", "/apis/policy/v1")[0] == 404
        _, v1 = s.request("GET", "/api/v1")
        ev = next(r for r in v1["resources"] if r["name"] == "pods/eviction")
        assert (ev["group"], ev["version"]) == ("policy", "v1beta1")
        # no namespace label before 1.21, selfLink still set in 1.19
        _, ns = s.request("GET", "/api/v1/namespaces/default")
        assert "kubernetes.io/metadata.name" not in (ns["metadata"].get("labels") or {})
        assert ns["metadata"]["selfLink"] == "/api/v1/namespaces/default"
        s.request("POST", "/api/v1/namespaces/default/pods", {"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c", "image": "busybox"}]}})
        st, err = s.request("POST", "/api/v1/namespaces/default/pods/p/eviction", {
            "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}})
        assert st == 400 and 'no kind "Eviction" is registered for version "policy/v1"' in err["message"]


def test_openapi_v3_is_404_v2_empty(sim):
    # v2 is a valid empty document (see test_server_openapi.py); v3 is not served, so kubectl
    # falls back to v2 and skips client-side validation for the kinds it does not describe.
    assert sim.request("GET", "/openapi/v2")[0] == 200
    assert sim.request("GET", "/openapi/v3")[0] == 404


def test_aggregated_discovery_accept_falls_back(sim):
    acc = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
           "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
    status, body = sim.request("GET", "/apis", headers={"Accept": acc})
    assert status == 200 and body["kind"] == "APIGroupList"


def test_keepalive_multiple_requests_one_connection(sim):
    conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=sim.ssl_context())
    for _ in range(3):
        conn.request("GET", "/api/v1/namespaces")
        r = conn.getresponse()
        assert r.status == 200
        assert r.getheader("Content-Length")
        r.read()
    conn.close()


def test_kubectl_get_create_apply_patch_delete(sim, tmp_path):
    out = sim.kubectl("get", "ns").stdout
    assert "kube-system" in out and "default" in out
    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kc-cm\n  labels: {app: kc}\n"
                        "data:\n  a: b\n")
    sim.kubectl("create", "-f", str(manifest), "--validate=false")
    assert "kc-cm" in sim.kubectl("get", "cm", "-l", "app=kc").stdout
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kc-cm\n  labels: {app: kc}\n"
                        "data:\n  a: c\n")
    sim.kubectl("apply", "-f", str(manifest), "--validate=false")
    sim.kubectl("patch", "cm", "kc-cm", "-p", '{"data":{"x":"y"}}')
    sim.kubectl("patch", "cm", "kc-cm", "--type=json", "-p", '[{"op":"add","path":"/data/z","value":"1"}]')
    got = json.loads(sim.kubectl("get", "cm", "kc-cm", "-o", "json").stdout)
    assert got["data"] == {"a": "c", "x": "y", "z": "1"}
    assert "kubectl.kubernetes.io/last-applied-configuration" in got["metadata"]["annotations"]
    desc = sim.kubectl("describe", "cm", "kc-cm").stdout
    assert "Name:" in desc and "kc-cm" in desc
    sim.kubectl("delete", "cm", "kc-cm")
    cp = sim.kubectl("get", "cm", "kc-cm", check=False)
    assert cp.returncode != 0 and 'configmaps "kc-cm" not found' in cp.stderr


def test_kubectl_typed_protobuf_commands(sim):
    sim.kubectl("create", "namespace", "pb-ns")
    sim.kubectl("-n", "pb-ns", "create", "configmap", "pb-cm", "--from-literal=k=v")
    sim.kubectl("-n", "pb-ns", "create", "secret", "generic", "pb-s", "--from-literal=k=v")
    sim.kubectl("-n", "pb-ns", "create", "serviceaccount", "pb-sa")
    tok = sim.kubectl("-n", "pb-ns", "create", "token", "pb-sa").stdout.strip()
    assert tok.count(".") == 2
    _, cm = sim.request("GET", "/api/v1/namespaces/pb-ns/configmaps/pb-cm")
    assert cm["data"] == {"k": "v"}
    _, s = sim.request("GET", "/api/v1/namespaces/pb-ns/secrets/pb-s")
    assert s["data"] == {"k": "dg=="} and s["type"] == "Opaque"
    sim.kubectl("-n", "pb-ns", "create", "deployment", "web", "--image=nginx", "--replicas=2", "--port=80")
    _, d = sim.request("GET", "/apis/apps/v1/namespaces/pb-ns/deployments/web")
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert d["spec"]["replicas"] == 2 and d["spec"]["selector"] == {"matchLabels": {"app": "web"}}
    assert c["image"] == "nginx" and c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]


def test_kubectl_wait_and_table_columns(sim, tmp_path):
    sim.kubectl("create", "namespace", "wait-ns")
    m = tmp_path / "pod.yaml"
    m.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: w1\n  namespace: wait-ns\nspec:\n"
                 "  containers:\n  - name: c\n    image: busybox\n")
    sim.kubectl("create", "-f", str(m), "--validate=false")
    out = sim.kubectl("get", "pods", "-n", "wait-ns").stdout
    assert out.split("\n")[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert "Pending" in out
    # kubectl wait on a condition set through the status subresource
    body = {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    st, _ = sim.request("PATCH", "/api/v1/namespaces/wait-ns/pods/w1/status", body=json.dumps(body),
                        headers={"Content-Type": "application/merge-patch+json"})
    assert st == 200
    sim.kubectl("wait", "-n", "wait-ns", "--for=condition=Ready", "pod/w1", "--timeout=10s")
    sim.kubectl("delete", "ns", "wait-ns", "--wait=false")


def test_anonymous_tls_without_client_cert(sim):
    ctx = ssl.create_default_context(cafile=sim.ca_file)
    conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=ctx)
    conn.request("GET", "/version")
    assert conn.getresponse().status == 200
