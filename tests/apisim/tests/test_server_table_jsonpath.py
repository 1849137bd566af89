"""CRD printer columns with JSONPath filter expressions (kubectl get shows condition reasons)."""

from conftest import wait_established

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def test_printer_column_filter_expression(sim):
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "jpwidgets.jp.example.com"},
        "spec": {"group": "jp.example.com", "scope": "Cluster",
                 "names": {"plural": "jpwidgets", "singular": "jpwidget", "kind": "JpWidget", "listKind": "JpWidgetList"},
                 "versions": [{"name": "v1", "served": True, "storage": True,
                               "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}},
                               "additionalPrinterColumns": [
                                   {"name": "Result", "type": "string",
                                    "jsonPath": ".status.conditions[?(@.type==\"Succeeded\")].reason"},
                                   {"name": "Others", "type": "string",
                                    "jsonPath": ".status.conditions[?(@.type!=\"Succeeded\")].type"}]}]}}
    st, _ = sim.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert st == 201
    wait_established(sim, "jpwidgets.jp.example.com")
    st, _ = sim.request("POST", "/apis/jp.example.com/v1/jpwidgets", {
        "apiVersion": "jp.example.com/v1", "kind": "JpWidget", "metadata": {"name": "w1"}})
    assert st == 201
    st, _ = sim.request("PUT", "/apis/jp.example.com/v1/jpwidgets/w1/status", {
        "apiVersion": "jp.example.com/v1", "kind": "JpWidget", "metadata": {"name": "w1"},
        "status": {"conditions": [{"type": "Ready", "reason": "Fine"},
                                  {"type": "Succeeded", "reason": "Completed"}]}})
    assert st == 200
    st, table = sim.request("GET", "/apis/jp.example.com/v1/jpwidgets/w1", headers={"Accept": TABLE})
    assert st == 200
    names = [c["name"] for c in table["columnDefinitions"]]
    row = dict(zip(names, table["rows"][0]["cells"]))
    assert row["Result"] == "Completed"
    assert row["Others"] == "Ready"
    out = sim.kubectl("get", "jpwidgets.jp.example.com", "w1").stdout
    assert "Completed" in out
