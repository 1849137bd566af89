"""Offline validation of crds/ and deploy/ (no API server needed).

`kubectl kustomize deploy/` (kubectl's built-in kustomize, what `kubectl apply -k deploy/` uses)
must build; the RBAC in it is checked rule by rule with a small RBAC evaluator (what must be
allowed, what must not, no wildcards); the Deployment against restricted Pod Security; the CRD
against the agreed ClusterRecovery design, recorded in this file (DEFAULTS, SPEC_FIELDS,
STATUS_FIELDS and the checks below): names, printer columns, structural schema, every default,
the condition schema, and CEL rules that only name existing fields.  The example
ClusterRecovery is validated and defaulted with a small structural-schema evaluator.  The C side
(each step's schema and defaults) is held against the CRD by tests/unit/test_spec_crd.c.
"""
import os
import re
import subprocess

import pytest
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")
NS = "kubemend-system"
SA = {"kind": "ServiceAccount", "name": "kubemend", "namespace": NS}


def kustomize(path):
    p = subprocess.run([KUBECTL, "kustomize", os.path.join(ROOT, path)], capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return [d for d in yaml.safe_load_all(p.stdout) if d]


@pytest.fixture(scope="module")
def objs():
    if not os.path.exists(KUBECTL):
        pytest.skip("kubectl not installed")
    return kustomize("deploy")


def one(objs, kind, name, namespace=None):
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name
             and o["metadata"].get("namespace") == namespace]
    assert len(found) == 1, (kind, name, namespace, len(found))
    return found[0]


@pytest.fixture(scope="module")
def crd():
    with open(os.path.join(ROOT, "crds", "clusterrecoveries.kubemend.io.yaml")) as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def schema(crd):
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


# ---- kustomize ------------------------------------------------------------------------------

def test_deploy_builds_with_everything(objs):
    kinds = sorted((o["kind"], o["metadata"].get("namespace") or "", o["metadata"]["name"])
                   for o in objs)
    assert kinds == sorted([
        ("CustomResourceDefinition", "", "clusterrecoveries.kubemend.io"),
        ("Namespace", "", NS),
        ("ServiceAccount", NS, "kubemend"),
        ("ClusterRole", "", "kubemend"),
        ("ClusterRoleBinding", "", "kubemend"),
        ("Role", NS, "kubemend-leader-election"),
        ("RoleBinding", NS, "kubemend-leader-election"),
        ("Role", "kube-system", "kubemend-extension-apiserver-authentication"),
        ("RoleBinding", "kube-system", "kubemend-extension-apiserver-authentication"),
        ("Role", "kube-public", "kubemend-cluster-info"),
        ("RoleBinding", "kube-public", "kubemend-cluster-info"),
        ("Role", "kube-system", "kubemend-join-token"),
        ("RoleBinding", "kube-system", "kubemend-join-token"),
        ("Role", NS, "kubemend-keys"),
        ("RoleBinding", NS, "kubemend-keys"),
        ("Deployment", NS, "kubemend"),
        ("Service", NS, "kubemend-metrics"),
    ])


def test_crds_kustomization_is_only_the_crd():
    if not os.path.exists(KUBECTL):
        pytest.skip("kubectl not installed")
    docs = kustomize("crds")
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        ("CustomResourceDefinition", "clusterrecoveries.kubemend.io")]


def test_every_manifest_parses_and_has_kind():
    for d in ("crds", "deploy"):
        for name in sorted(os.listdir(os.path.join(ROOT, d))):
            if name.endswith(".yaml"):
                with open(os.path.join(ROOT, d, name)) as f:
                    for doc in yaml.safe_load_all(f):
                        assert doc and doc.get("apiVersion") and doc.get("kind"), name


# ---- RBAC -----------------------------------------------------------------------------------

def rule_allows(rule, verb, group, resource, name=""):
    if verb not in rule.get("verbs", []) or group not in rule.get("apiGroups", []):
        return False
    if resource not in rule.get("resources", []):
        return False
    names = rule.get("resourceNames")
    return not names or name in names


def allowed(objs, verb, group, resource, name="", namespace=None):
    """Whether the kubemend ServiceAccount may do this (cluster-wide when namespace is None)."""
    roles = []
    for b in objs:
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding") or SA not in b["subjects"]:
            continue
        if b["kind"] == "RoleBinding" and b["metadata"]["namespace"] != namespace:
            continue
        ref = b["roleRef"]
        rns = None if ref["kind"] == "ClusterRole" else b["metadata"]["namespace"]
        roles.append(one(objs, ref["kind"], ref["name"], rns))
    return any(rule_allows(r, verb, group, resource, name) for role in roles
               for r in role["rules"] if "nonResourceURLs" not in r)


def all_rules(objs):
    for o in objs:
        if o["kind"] in ("ClusterRole", "Role"):
            for r in o["rules"]:
                yield o, r


def test_no_rbac_wildcards(objs):
    for o, r in all_rules(objs):
        for field in ("verbs", "apiGroups", "resources", "resourceNames", "nonResourceURLs"):
            for v in r.get(field, []):
                assert "*" not in v, (o["metadata"]["name"], field, v)


CLUSTER_WIDE = [
    ("kubemend.io", "clusterrecoveries", ["get", "list", "watch", "patch"]),
    ("kubemend.io", "clusterrecoveries/status", ["update"]),
    ("", "secrets", ["get", "list", "patch", "delete"]),
    ("", "serviceaccounts", ["get"]),
    ("", "pods", ["get", "list", "delete"]),
    ("", "pods/eviction", ["create"]),
    ("apps", "deployments", ["get", "list", "watch", "patch"]),
    ("apps", "statefulsets", ["get", "list", "watch", "patch"]),
    ("apps", "daemonsets", ["get", "list", "watch", "patch"]),
    ("apps", "replicasets", ["list"]),
    ("", "namespaces", ["list"]),
    ("", "nodes", ["get", "list"]),
    ("certificates.k8s.io", "certificatesigningrequests", ["get", "list", "watch"]),
    ("certificates.k8s.io", "certificatesigningrequests/approval", ["update"]),
    ("authentication.k8s.io", "tokenreviews", ["create"]),
    ("", "events", ["create", "patch"]),
]


def test_required_permissions(objs):
    for group, resource, verbs in CLUSTER_WIDE:
        for v in verbs:
            assert allowed(objs, v, group, resource, "x"), (v, group, resource)
    for signer in ("kubernetes.io/kubelet-serving", "kubernetes.io/kube-apiserver-client-kubelet"):
        assert allowed(objs, "approve", "certificates.k8s.io", "signers", signer)
    assert allowed(objs, "get", "", "configmaps", "kube-root-ca.crt")
    for v in ("get", "create", "update"):
        assert allowed(objs, v, "coordination.k8s.io", "leases", "kubemend", NS)
    for v in ("get", "update"):
        assert allowed(objs, v, "", "configmaps", "extension-apiserver-authentication",
                       "kube-system")
    assert allowed(objs, "create", "", "configmaps", "", "kube-system")
    # nodes step: cluster-info by name, its backup, the opt-in bootstrap token
    for v in ("get", "update"):
        assert allowed(objs, v, "", "configmaps", "cluster-info", "kube-public")
    assert allowed(objs, "create", "", "configmaps", "", "kube-public")
    assert allowed(objs, "create", "", "secrets", "", "kube-system")
    for v in ("get", "update"):  # the key snapshot (reconcilers/bridge/snapshot.h)
        assert allowed(objs, v, "", "configmaps", "kubemend-keys", NS)
    assert allowed(objs, "create", "", "configmaps", "", NS)
    assert allowed(objs, "create", "", "serviceaccounts/token", "kubemend", NS)
    cr = one(objs, "ClusterRole", "kubemend")
    nonres = [r for r in cr["rules"] if "nonResourceURLs" in r]
    assert nonres == [{"nonResourceURLs": ["/openid/v1/jwks"], "verbs": ["get"]}]


def test_forbidden_permissions(objs):
    denied = [
        ("create", "", "secrets", ""), ("update", "", "secrets", "x"),
        ("create", "", "pods", ""), ("update", "", "pods", "x"),
        ("delete", "apps", "deployments", "x"), ("update", "apps", "deployments", "x"),
        ("create", "kubemend.io", "clusterrecoveries", ""),
        ("delete", "kubemend.io", "clusterrecoveries", "x"),
        ("approve", "certificates.k8s.io", "signers", "kubernetes.io/kube-apiserver-client"),
        ("approve", "certificates.k8s.io", "signers", "example.com/custom"),
        ("delete", "certificates.k8s.io", "certificatesigningrequests", "x"),
        ("get", "", "configmaps", "some-app-config"),
        ("list", "", "configmaps", ""),
        ("update", "", "configmaps", "kube-root-ca.crt"),
        ("create", "", "serviceaccounts/token", "default"),
        ("get", "", "secrets/status", "x"),
        ("escalate", "rbac.authorization.k8s.io", "clusterroles", "x"),
        ("create", "coordination.k8s.io", "leases", ""),  # cluster-wide: no
        ("create", "apiextensions.k8s.io", "customresourcedefinitions", ""),
    ]
    for verb, group, resource, name in denied:
        assert not allowed(objs, verb, group, resource, name), (verb, group, resource, name)
    # kube-system Role: existing ConfigMaps only by name
    for verb in ("get", "update", "patch", "delete"):
        assert not allowed(objs, verb, "", "configmaps", "kubeadm-config", "kube-system")
    assert not allowed(objs, "delete", "", "configmaps", "extension-apiserver-authentication",
                       "kube-system")
    for verb in ("get", "update", "delete"):
        assert not allowed(objs, verb, "", "configmaps", "other", "kube-public")
    assert not allowed(objs, "create", "", "secrets", "", "default")
    # leases only in the operator's namespace
    assert not allowed(objs, "update", "coordination.k8s.io", "leases", "kube-scheduler",
                       "kube-system")


def test_signer_rule_is_exactly_the_kubelet_signers(objs):
    rules = [r for _, r in all_rules(objs) if "signers" in r.get("resources", [])]
    assert len(rules) == 1
    assert rules[0]["verbs"] == ["approve"]
    assert rules[0]["apiGroups"] == ["certificates.k8s.io"]
    assert sorted(rules[0]["resourceNames"]) == [
        "kubernetes.io/kube-apiserver-client-kubelet", "kubernetes.io/kubelet-serving"]


def test_bindings_point_at_existing_roles(objs):
    for b in objs:
        if b["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            assert b["subjects"] == [SA]
            ref = b["roleRef"]
            ns = None if ref["kind"] == "ClusterRole" else b["metadata"]["namespace"]
            one(objs, ref["kind"], ref["name"], ns)


# ---- Deployment / Service -------------------------------------------------------------------

def test_deployment_restricted_pod_security(objs):
    dep = one(objs, "Deployment", "kubemend", NS)
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kubemend"
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    for v in pod.get("volumes", []):
        assert set(v) - {"name"} <= {"emptyDir", "configMap", "secret", "projected",
                                     "downwardAPI"}, v
    assert len(pod["containers"]) == 1 and not pod.get("initContainers")
    c = pod["containers"][0]
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not sc.get("privileged")
    assert one(objs, "Namespace", NS)["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "restricted"


def test_deployment_probes_args_resources(objs):
    dep = one(objs, "Deployment", "kubemend", NS)
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}

    def port_of(probe):
        p = probe["httpGet"]["port"]
        return ports[p] if isinstance(p, str) else p

    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert port_of(c["livenessProbe"]) == 8080 and port_of(c["readinessProbe"]) == 8080
    assert c["args"] == ["operator", "--leader-elect", "--metrics-bind-address=:8080"]
    assert c["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                              "limits": {"cpu": "500m", "memory": "128Mi"}}
    assert c["image"] == "kubemend:latest"
    assert pod["priorityClassName"] == "system-cluster-critical"
    tol = {(t["key"], t.get("effect")) for t in pod["tolerations"]}
    assert ("node-role.kubernetes.io/control-plane", "NoSchedule") in tol
    assert ("node-role.kubernetes.io/master", "NoSchedule") in tol
    assert ("node.kubernetes.io/not-ready", None) in tol  # both NoSchedule and NoExecute
    for t in pod["tolerations"]:
        assert t["operator"] == "Exists" and t.get("key")  # never "tolerate everything"
    sel = dep["spec"]["selector"]["matchLabels"]
    assert sel.items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def test_metrics_service_selects_the_pods(objs):
    dep = one(objs, "Deployment", "kubemend", NS)
    svc = one(objs, "Service", "kubemend-metrics", NS)
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= labels.items()
    (port,) = svc["spec"]["ports"]
    assert port["port"] == 8080
    names = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert port["targetPort"] in names or port["targetPort"] == 8080


def test_optional_metrics_networkpolicy(objs):
    """deploy/optional/metrics-networkpolicy.yaml (issue 16 item 8): not applied by `kubectl apply -k deploy/`,
    selects the operator's pods and admits only the metrics port (probes come from the node: always allowed)."""
    with open(os.path.join(ROOT, "deploy", "optional", "metrics-networkpolicy.yaml")) as f:
        (np,) = [o for o in yaml.safe_load_all(f) if o]
    assert not [o for o in objs if o["kind"] == "NetworkPolicy"]
    assert (np["apiVersion"], np["kind"], np["metadata"]["namespace"]) == ("networking.k8s.io/v1", "NetworkPolicy", NS)
    dep = one(objs, "Deployment", "kubemend", NS)
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert np["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    assert np["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = np["spec"]["ingress"]
    assert rule["from"] and all(f.get("namespaceSelector") or f.get("podSelector") for f in rule["from"])
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert [p["port"] for p in rule["ports"]] == ["metrics"]
    assert "metrics" in {p["name"] for p in container["ports"]}
    probe_ports = {container[p]["httpGet"]["port"] for p in ("livenessProbe", "readinessProbe")}
    assert probe_ports == {"metrics"}  # the probes share the port; the kubelet is allowed regardless


def test_optional_bridge_replace_rbac(objs):
    """deploy/optional/bridge-replace.yaml: not applied by `kubectl apply -k deploy/`; while bridged it grants
    exactly what replacing a token Secret needs (reconcilers/tokens/replace.h): create Secrets, patch
    ServiceAccounts, bound to kubemend's ServiceAccount."""
    assert not allowed(objs, "create", "", "secrets", "", "default")
    assert not allowed(objs, "patch", "", "serviceaccounts", "x", "default")
    with open(os.path.join(ROOT, "deploy", "optional", "bridge-replace.yaml")) as f:
        extra = [o for o in yaml.safe_load_all(f) if o]
    assert {o["kind"] for o in extra} == {"ClusterRole", "ClusterRoleBinding"}
    both = objs + extra
    assert allowed(both, "create", "", "secrets", "", "default")
    assert allowed(both, "patch", "", "serviceaccounts", "x", "default")
    (role,) = [o for o in extra if o["kind"] == "ClusterRole"]
    assert sorted((r["resources"][0], tuple(r["verbs"])) for r in role["rules"]) == [
        ("secrets", ("create",)), ("serviceaccounts", ("patch",))]
    assert not [n for n in ("update", "delete", "get") if allowed(extra, n, "", "serviceaccounts", "x", "default")]


# ---- CRD ------------------------------------------------------------------------------------

def test_crd_names_and_version(crd):
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["metadata"]["name"] == "clusterrecoveries.kubemend.io"
    s = crd["spec"]
    assert s["group"] == "kubemend.io" and s["scope"] == "Cluster"
    assert s["names"]["kind"] == "ClusterRecovery"
    assert s["names"]["plural"] == "clusterrecoveries"
    assert s["names"]["singular"] == "clusterrecovery"
    assert s["names"]["shortNames"] == ["crec"]
    (v,) = s["versions"]
    assert (v["name"], v["served"], v["storage"]) == ("v1alpha1", True, True)
    assert v["subresources"] == {"status": {}}


def test_printer_columns(crd):
    cols = [(c["name"], c["type"], c["jsonPath"])
            for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert cols == [
        ("Phase", "string", ".status.phase"),
        ("Step", "string", ".status.currentStep"),
        ("Progress", "string", ".status.progress"),
        ("Result", "string", '.status.conditions[?(@.type=="Succeeded")].reason'),
        ("Verified", "string", '.status.conditions[?(@.type=="Verified")].status'),
        ("Paused", "string", '.status.conditions[?(@.type=="Paused")].status'),
        ("Age", "date", ".metadata.creationTimestamp"),
    ]


def walk(node, path="$"):
    yield path, node
    for k, sub in (node.get("properties") or {}).items():
        yield from walk(sub, f"{path}.{k}")
    if "items" in node:
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural(schema):
    for path, node in walk(schema):
        if path == "$.metadata":
            assert node == {"type": "object"}
            continue
        assert node.get("type") in ("object", "array", "string", "integer", "boolean",
                                    "number"), path
        if node["type"] == "array":
            assert "items" in node, path
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        for banned in ("$ref", "additionalItems", "uniqueItems", "patternProperties",
                       "dependencies", "definitions", "id"):
            assert banned not in node, (path, banned)
        if node["type"] == "object" and "properties" in node:
            assert "additionalProperties" not in node, path


# Every default of the agreed design, by path.
DEFAULTS = {
    "$.spec": {},
    "$.spec.dryRun": False,
    "$.spec.paused": False,
    "$.spec.tokens": {},
    "$.spec.tokens.enabled": True,
    "$.spec.tokens.mode": "Regenerate",
    "$.spec.tokens.verifyTimeoutSeconds": 60,
    "$.spec.tokens.maxInFlight": 8,
    "$.spec.extensionApiserverAuthentication": {},
    "$.spec.extensionApiserverAuthentication.enabled": True,
    "$.spec.csr": {},
    "$.spec.csr.enabled": True,
    "$.spec.csr.windowSeconds": 3600,
    "$.spec.csr.continuous": False,
    "$.spec.csr.deny": True,
    "$.spec.csr.approveKubeletClient": False,
    "$.spec.csr.maxExpirationSeconds": 31536000,
    "$.spec.csr.maxInFlight": 8,
    "$.spec.nodes": {},
    "$.spec.nodes.enabled": True,
    "$.spec.nodes.updateClusterInfo": True,
    "$.spec.nodes.createJoinToken": False,
    "$.spec.nodes.joinTokenTTLSeconds": 3600,
    "$.spec.pods": {},
    "$.spec.pods.enabled": True,
    "$.spec.pods.includeDefaultServiceAccount": False,
    "$.spec.pods.maxConcurrent": 5,
    "$.spec.pods.parallelNamespaces": 4,
    "$.spec.pods.waitForReady": True,
    "$.spec.pods.namespaceTimeoutSeconds": 600,
    "$.spec.pods.evictionTimeoutSeconds": 300,
    "$.spec.pods.deleteOwnerlessPods": False,
}

SPEC_FIELDS = {
    "tokens": {"enabled", "mode", "verifyTimeoutSeconds", "maxInFlight"},
    "extensionApiserverAuthentication": {"enabled", "pinnedFingerprints"},
    "csr": {"enabled", "windowSeconds", "continuous", "deny", "approveKubeletClient",
            "allowedDNSPatterns", "maxExpirationSeconds", "maxInFlight"},
    "nodes": {"enabled", "updateClusterInfo", "createJoinToken", "joinTokenTTLSeconds"},
    "pods": {"enabled", "includeDefaultServiceAccount", "namespaces", "includeNamespaces",
             "excludeNamespaces", "namespaceSelector", "maxConcurrent", "parallelNamespaces",
             "waitForReady", "namespaceTimeoutSeconds", "evictionTimeoutSeconds", "deleteOwnerlessPods"},
}

STATUS_FIELDS = {
    "observedGeneration", "phase", "currentStep", "progress", "startedAt", "completedAt",
    "conditions", "tokens", "extensionApiserverAuthentication", "csr", "nodes", "pods", "rebuild"}


def test_spec_fields_and_defaults(schema):
    spec = schema["properties"]["spec"]
    assert set(spec["properties"]) == {"dryRun", "paused", "rebuildTime"} | set(SPEC_FIELDS)
    # rebuildTime: optional (absent = derived from the cluster's CA), a date-time
    rt = spec["properties"]["rebuildTime"]
    assert (rt["type"], rt["format"], "default" in rt) == ("string", "date-time", False)
    for step, fields in SPEC_FIELDS.items():
        assert set(spec["properties"][step]["properties"]) == fields, step
    nodes = dict(walk(schema))
    for path, want in DEFAULTS.items():
        assert path in nodes, path
        assert "default" in nodes[path], path
        assert nodes[path]["default"] == want, path
        assert type(nodes[path]["default"]) is type(want), path
    # no default beyond the design's
    extra = [p for p, n in nodes.items() if "default" in n and p not in DEFAULTS]
    assert extra == []
    # every scalar spec field has a default unless it is a list or selector (optional)
    for path, node in nodes.items():
        if path.startswith("$.spec.") and node["type"] in ("boolean", "integer", "string") \
                and "[]" not in path and "namespaceSelector" not in path and path != "$.spec.rebuildTime":
            assert path in DEFAULTS, path


def test_status_fields(schema):
    st = schema["properties"]["status"]["properties"]
    assert set(st) == STATUS_FIELDS
    assert st["phase"]["enum"] == ["Pending", "Waiting", "Running", "Succeeded", "Failed"]
    assert st["currentStep"]["enum"] == ["tokens", "extensionApiserverAuthentication", "csr",
                                         "nodes", "pods", ""]
    assert set(st["tokens"]["properties"]) == {
        "method", "scanned", "stale", "regenerated", "deleted", "failed", "malformed", "skipped",
        "healed", "bridged", "replaced", "retired", "retiring", "changed", "unhealed", "malformedSecrets",
        "continue"}
    assert st["tokens"]["properties"]["method"]["enum"] == ["JWKS", "TokenReview"]
    assert set(st["extensionApiserverAuthentication"]["properties"]) == {
        "backup", "removed", "kept", "readded", "phase"}
    assert set(st["extensionApiserverAuthentication"]["properties"]["removed"]["items"][
        "properties"]) == {"key", "subject", "fingerprint", "reason"}
    assert set(st["csr"]["properties"]) == {"windowEndsAt", "approved", "denied", "pending",
                                            "ignored", "recent"}
    assert set(st["csr"]["properties"]["recent"]["items"]["properties"]) == {
        "name", "node", "decision", "reason"}
    assert set(st["pods"]["properties"]) == {
        "namespacesTotal", "namespacesDone", "currentNamespace", "done", "restarted", "evicted",
        "deleted", "manual", "stuck", "current", "alreadyRestarted", "self"}
    assert set(st["pods"]["properties"]["self"]["properties"]) == {"workload", "uid", "action", "message"}
    assert set(st["rebuild"]["properties"]) == {"time", "source", "error"}
    assert set(st["pods"]["properties"]["current"]["items"]["properties"]) == {"namespace", "restarted"}
    limits = {"$.status.tokens.changed": 50, "$.status.tokens.unhealed": 50,
              "$.status.tokens.malformedSecrets": 50,
              "$.status.extensionApiserverAuthentication.removed": 20,
              "$.status.csr.recent": 50, "$.status.nodes.notReady": 50, "$.status.pods.manual": 50, "$.status.pods.stuck": 50}
    nodes = dict(walk(schema))
    for path, n in limits.items():
        assert nodes[path]["maxItems"] == n, path
    for path in ("$.status.startedAt", "$.status.completedAt", "$.status.csr.windowEndsAt",
                 "$.status.rebuild.time"):
        assert nodes[path]["format"] == "date-time"


def test_conditions_are_metav1_conditions(schema):
    c = schema["properties"]["status"]["properties"]["conditions"]
    assert c["type"] == "array"
    assert c["x-kubernetes-list-type"] == "map"
    assert c["x-kubernetes-list-map-keys"] == ["type"]
    item = c["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    p = item["properties"]
    assert set(p) == {"type", "status", "observedGeneration", "lastTransitionTime", "reason",
                      "message"}
    assert p["status"]["enum"] == ["True", "False", "Unknown"]
    assert p["observedGeneration"]["type"] == "integer"
    assert p["lastTransitionTime"]["format"] == "date-time"
    for t in ("Succeeded", "TokensRegenerated", "ExtensionAuthCleaned", "CSRApprovalWindow",
              "NodesRejoinReady", "PodsRestarted"):
        assert re.match(p["type"]["pattern"], t)
    for r in ("Running", "Waiting", "Completed", "WindowOpen", "WindowClosed", "TokensFailed"):
        assert re.match(p["reason"]["pattern"], r)
    assert not re.match(p["reason"]["pattern"], "not camel case")


CEL_IDENT = re.compile(r"\bself\.([A-Za-z_][A-Za-z0-9_]*)")


def test_cel_rules(schema):
    rules = {}
    for path, node in walk(schema):
        for v in node.get("x-kubernetes-validations", []):
            assert v.get("message"), (path, v)
            rules.setdefault(path, []).append(v["rule"])
            # every self.<field> names a property of this node
            for field in CEL_IDENT.findall(v["rule"]):
                assert field in node.get("properties", {}), (path, field)
            assert v["rule"].count("(") == v["rule"].count(")"), v["rule"]
    joined = {p: " ".join(r) for p, r in rules.items()}
    assert "includeNamespaces.all(" in joined["$.spec.pods"]
    assert "excludeNamespaces" in joined["$.spec.pods"]
    # A real >= 1.25 server evaluates every rule against the schema's own `default` values too
    # (`default: {}` on an object): a rule may only read a field of an object that has a default
    # through has().  What enum/minimum/maximum express is not repeated as a rule.
    for path, rs in rules.items():
        node = dict(walk(schema))[path]
        if "default" in node:
            for r in rs:
                for field in CEL_IDENT.findall(r):
                    assert f"has(self.{field})" in r, (path, r)
    # CEL cost estimation needs bounded lists for rules that iterate them
    nodes = dict(walk(schema))
    for f in ("includeNamespaces", "excludeNamespaces"):
        assert nodes[f"$.spec.pods.{f}"]["maxItems"] <= 1000
        assert nodes[f"$.spec.pods.{f}[]"]["maxLength"] <= 253


# ---- a small structural-schema evaluator (defaulting + validation, like the API server) -------

def apply_defaults(node, value):
    if node["type"] == "object" and isinstance(value, dict):
        for k, sub in (node.get("properties") or {}).items():
            if k not in value and "default" in sub:
                value[k] = __import__("copy").deepcopy(sub["default"])
            if k in value:
                value[k] = apply_defaults(sub, value[k])
    elif node["type"] == "array" and isinstance(value, list):
        value = [apply_defaults(node["items"], v) for v in value]
    return value


def validate(node, value, path="$"):
    """List of errors (empty when valid)."""
    errs = []
    t = node["type"]
    ok = {"object": dict, "array": list, "string": str, "boolean": bool}.get(t)
    if t == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{path}: not an integer"]
    elif t == "number":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return [f"{path}: not a number"]
    elif not isinstance(value, ok):
        return [f"{path}: not a {t}"]
    if "enum" in node and value not in node["enum"]:
        errs.append(f"{path}: {value!r} not in enum")
    if "minimum" in node and value < node["minimum"]:
        errs.append(f"{path}: below minimum")
    if "maximum" in node and value > node["maximum"]:
        errs.append(f"{path}: above maximum")
    if "pattern" in node and not re.search(node["pattern"], value):
        errs.append(f"{path}: does not match pattern")
    if "maxItems" in node and len(value) > node["maxItems"]:
        errs.append(f"{path}: too many items")
    if t == "object":
        props = node.get("properties")
        for k, v in value.items():
            if props is not None and k not in props:
                errs.append(f"{path}.{k}: unknown field (would be pruned)")
            elif props is not None:
                errs += validate(props[k], v, f"{path}.{k}")
            elif isinstance(node.get("additionalProperties"), dict):
                errs += validate(node["additionalProperties"], v, f"{path}.{k}")
        for r in node.get("required", []):
            if r not in value:
                errs.append(f"{path}.{r}: required")
    if t == "array":
        for i, v in enumerate(value):
            errs += validate(node["items"], v, f"{path}[{i}]")
    return errs


def test_defaults_validate_against_their_schema(schema):
    for path, node in walk(schema):
        if "default" in node:
            assert validate(node, node["default"], path) == [], path


def test_empty_spec_gets_every_default(schema):
    obj = apply_defaults(schema, {"apiVersion": "kubemend.io/v1alpha1",
                                  "kind": "ClusterRecovery", "metadata": {"name": "r"}})
    assert obj["spec"] == {
        "dryRun": False,
        "paused": False,
        "tokens": {"enabled": True, "mode": "Regenerate", "verifyTimeoutSeconds": 60, "maxInFlight": 8},
        "extensionApiserverAuthentication": {"enabled": True},
        "csr": {"enabled": True, "windowSeconds": 3600, "continuous": False, "deny": True,
                "approveKubeletClient": False, "maxExpirationSeconds": 31536000, "maxInFlight": 8},
        "nodes": {"enabled": True, "updateClusterInfo": True, "createJoinToken": False,
                  "joinTokenTTLSeconds": 3600},
        "pods": {"enabled": True, "includeDefaultServiceAccount": False, "maxConcurrent": 5,
                 "parallelNamespaces": 4, "waitForReady": True, "namespaceTimeoutSeconds": 600,
                 "evictionTimeoutSeconds": 300, "deleteOwnerlessPods": False},
    }
    assert validate(schema, obj) == []


def test_example_recovery_is_valid_and_uses_the_defaults(schema):
    with open(os.path.join(ROOT, "crds", "example-recovery.yaml")) as f:
        ex = yaml.safe_load(f)
    assert ex["apiVersion"] == "kubemend.io/v1alpha1" and ex["kind"] == "ClusterRecovery"
    assert validate(schema, ex) == []
    defaulted = apply_defaults(schema, {"spec": {}})["spec"]
    for step, fields in defaulted.items():
        if isinstance(fields, dict):
            for k, v in fields.items():
                assert ex["spec"][step][k] == v, (step, k)
        else:
            assert ex["spec"][step] == fields, step


def test_schema_rejects_bad_values(schema):
    spec = schema["properties"]["spec"]
    bad = [
        {"tokens": {"mode": "Shred"}},
        {"pods": {"maxConcurrent": 0}},
        {"pods": {"maxConcurrent": 101}},
        {"csr": {"windowSeconds": 0}},
        {"dryRun": "yes"},
        {"pods": {"namespaceSelector": {"matchExpressions": [{"key": "a"}]}}},
        {"extensionApiserverAuthentication": {"pinnedFingerprints": ["abc"]}},
        {"tokens": {"unknown": True}},
    ]
    for b in bad:
        assert validate(spec, apply_defaults(spec, b)) != [], b
    good_fp = ":".join(["Ab"] * 32)
    assert validate(spec, {"extensionApiserverAuthentication": {
        "pinnedFingerprints": [good_fp, "0f" * 32]}}) == []
