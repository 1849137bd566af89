"""Differential check: one request sequence against two API servers, responses normalized and compared.

kubemend's integration tests run against tests/apisim; this module is how we keep apisim honest. It replays
the requests kubemend (and its tests) depend on — discovery, lists with pages and selectors, the patch types,
preconditions, Eviction, CSR approval, TokenReview, events through both APIs, custom resources, watches —
against apisim and a real kube-apiserver, normalizes what must differ (uids, resourceVersions, timestamps,
generated names, managedFields, keys and tokens) and compares the rest.

Usage by hand:  /usr/bin/python3 tests/e2e/differential.py KUBECONFIG_A KUBECONFIG_B
(both kubeconfigs with client certificates, as apisim and the realk8s harness write them).
"""

import base64
import copy
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse

import yaml

NS = "kmdiff"
UA = "kmdiff/1.0 (linux/amd64) kubernetes/differential"


# --------------------------------------------------------------------------- a tiny client

class Client:
    """Admin client of one API server, from a kubeconfig with a client certificate."""

    def __init__(self, kubeconfig):
        with open(kubeconfig) as f:
            kc = yaml.safe_load(f)
        ctx_name = kc.get("current-context")
        ctx = next(c["context"] for c in kc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in kc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in kc["users"] if u["name"] == ctx["user"])
        self._tmp = tempfile.mkdtemp(prefix="kmdiff-")
        base = os.path.dirname(os.path.abspath(kubeconfig))
        ca = self._file(cluster, "certificate-authority", base)
        cert = self._file(user, "client-certificate", base)
        key = self._file(user, "client-key", base)
        u = urllib.parse.urlparse(cluster["server"])
        self.host, self.port = u.hostname, u.port or 443
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.load_cert_chain(cert, key)
        self.conn = None

    def _file(self, section, key, base):
        if section.get(key + "-data"):
            path = os.path.join(self._tmp, key)
            with open(path, "wb") as f:
                f.write(base64.b64decode(section[key + "-data"]))
            return path
        p = section[key]
        return p if os.path.isabs(p) else os.path.join(base, p)

    def request(self, method, path, body=None, ctype="application/json", accept="application/json",
                stream_lines=None, timeout=30):
        """(status, body): body parsed as JSON when it is JSON, else text.  stream_lines=N reads a watch:
        the first N lines (or what arrives within the timeout) as a list of parsed events."""
        if self.conn is None:
            self.conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        headers = {"Accept": accept, "User-Agent": UA}
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            headers["Content-Type"] = ctype
        conn = self.conn
        if stream_lines is not None:
            conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            if stream_lines is not None:
                events = []
                while len(events) < stream_lines:
                    line = resp.readline()
                    if not line:
                        break
                    events.append(json.loads(line))
                return resp.status, events
            text = resp.read().decode("utf-8", "replace")
        except (http.client.HTTPException, OSError):
            self.conn = None
            raise
        finally:
            if stream_lines is not None:
                conn.close()
        try:
            return resp.status, json.loads(text)
        except ValueError:
            return resp.status, text


# --------------------------------------------------------------------------- normalization

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
UID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# generated names (metadata.generateName, the tokens controller, ServiceAccount admission's kube-api-access
# volume): a name whose last segment is 5 characters of k8s.io/apimachinery's rand alphabet (no vowels)
GEN_RE = re.compile(r"^([a-z0-9.-]*-)[bcdfghjklmnpqrstvwxz2456789]{5}$")
OPAQUE_KEYS = ("token", "certificate", "request", "ca.crt", "client-ca-file", "requestheader-client-ca-file",
               "kubeconfig", "n", "x", "y", "e", "kid", "caBundle", "jws-kubeconfig")


def normalize(value, key=None):
    """A copy of a response body with what must differ between two servers replaced by placeholders."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("managedFields", "selfLink"):
                continue
            if k in ("uid", "resourceVersion", "continue") and isinstance(v, str) and v:
                out[k] = "<%s>" % k
            elif k in OPAQUE_KEYS and isinstance(v, str):
                out[k] = "<%s>" % k
            elif k == "remainingItemCount":
                out[k] = "<count>" if v else v
            else:
                out[k] = normalize(v, k)
        return out
    if isinstance(value, list):
        return [normalize(v, key) for v in value]
    if isinstance(value, str):
        if TIME_RE.match(value):
            return "<time>"
        m = GEN_RE.match(value)
        if m:
            return m.group(1) + "<rand>"
        return re.sub(r"\(\d+\)", "(<n>)", UID_RE.sub("<uid>", value)) if "precondition" in value else \
            UID_RE.sub("<uid>", value)
    return value


# --------------------------------------------------------------------------- the sequence

def _pick(body, *path):
    for p in path:
        if body is None:
            return None
        body = body[p] if isinstance(body, list) and isinstance(p, int) and len(body) > p else (
            body.get(p) if isinstance(body, dict) else None)
    return body


def _wait(client, path, pred, timeout=30):
    deadline = time.time() + timeout
    status, body = None, None
    while time.time() < deadline:
        status, body = client.request("GET", path)
        if pred(status, body):
            return status, body
        time.sleep(0.2)
    return status, body


def _names(body):
    return sorted(i["metadata"]["name"] for i in (body or {}).get("items") or [])


def _keys(body, *path):
    v = _pick(body, *path)
    return sorted(v) if isinstance(v, dict) else v


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


CRD_NAME = "kmdiffs.diff.kubemend.io"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": CRD_NAME},
    "spec": {"group": "diff.kubemend.io", "scope": "Cluster",
             "names": {"kind": "KmDiff", "plural": "kmdiffs", "singular": "kmdiff", "listKind": "KmDiffList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "default": {}, "properties": {
                                   "mode": {"type": "string", "default": "Regenerate"},
                                   "n": {"type": "integer", "default": 5}}},
                               "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}]}}
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def _cleanup(c):
    """Removes what an earlier (interrupted) run left behind."""
    c.request("DELETE", "/api/v1/namespaces/" + NS)
    c.request("DELETE", CRD_PATH + "/" + CRD_NAME)
    for n in ("kmdiff-csr", "kmdiff-csr-deny"):
        c.request("DELETE", CSR_PATH + "/" + n)
    _wait(c, "/api/v1/namespaces/" + NS, lambda s, b: s == 404, timeout=90)
    _wait(c, CRD_PATH + "/" + CRD_NAME, lambda s, b: s == 404, timeout=60)


def sequence(c, version):
    """Runs the sequence against client c; yields (step name, status, body) one by one (bodies are
    normalized by run()).  version: "v1.19" or "v1.26" (what the server should behave like)."""
    api = "/api/v1/namespaces/" + NS
    modern = version != "v1.19"
    policy = "policy/v1" if modern else "policy/v1beta1"

    def step(name, method, path, body=None, **kw):
        status, resp = c.request(method, path, body, **kw)
        return name, status, resp

    def review(token):
        s, b = c.request("POST", TOKENREVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                                "spec": {"token": token}})
        return s, _pick(b, "status") if s == 201 else b

    _cleanup(c)

    # ---- discovery: the groups/versions kubemend (and kubectl) use
    s, b = c.request("GET", "/apis")
    groups = {g["name"]: sorted(v["version"] for v in g["versions"]) for g in (b or {}).get("groups", [])}
    wanted = ["apps", "batch", "policy", "events.k8s.io", "certificates.k8s.io", "coordination.k8s.io",
              "authentication.k8s.io", "apiextensions.k8s.io", "rbac.authorization.k8s.io"]
    yield "discovery /apis", s, {g: groups.get(g) for g in wanted}
    s, b = c.request("GET", "/api/v1")
    res = {r["name"]: sorted(r.get("verbs", [])) + (["%s/%s" % (r["group"], r.get("version"))] if r.get("group")
                                                    else []) for r in (b or {}).get("resources", [])}
    yield "discovery /api/v1", s, {r: res.get(r) for r in ("pods", "pods/eviction", "pods/status", "secrets",
                                                           "configmaps", "nodes", "serviceaccounts/token",
                                                           "namespaces", "events")}
    for gv in ("policy/v1", "policy/v1beta1", "events.k8s.io/v1", "events.k8s.io/v1beta1", "batch/v1beta1"):
        s, b = c.request("GET", "/apis/" + gv)
        yield "discovery /apis/" + gv, s, sorted(r["name"] for r in b.get("resources", [])) if s == 200 else None
    s, b = c.request("GET", "/version")
    yield "version", s, {"major": _pick(b, "major"), "minor": _pick(b, "minor")}

    # ---- namespace, service account, token Secret
    yield step("create namespace", "POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
    s, b = c.request("GET", "/api/v1/namespaces?labelSelector=kubernetes.io%2Fmetadata.name%3D" + NS)
    yield "list namespaces by kubernetes.io/metadata.name", s, _names(b)
    yield step("create serviceaccount", "POST", api + "/serviceaccounts", {"metadata": {"name": "worker"}})
    _wait(c, api + "/serviceaccounts/default", lambda s, b: s == 200)
    s, b = _wait(c, api + "/configmaps/kube-root-ca.crt", lambda s, b: s == 200, timeout=5 if modern else 2)
    yield "kube-root-ca.crt published", s, _keys(b, "data") if s == 200 else None
    sec = {"metadata": {"name": "worker-token-user", "annotations": {
        "kubernetes.io/service-account.name": "worker"}}, "type": "kubernetes.io/service-account-token"}
    yield step("create token secret", "POST", api + "/secrets", sec)
    s, b = _wait(c, api + "/secrets/worker-token-user", lambda s, b: s == 200 and _pick(b, "data", "token"))
    yield "token secret filled by the controller", s, {"keys": _keys(b, "data"),
                                                       "annotations": _keys(b, "metadata", "annotations")}
    rv = _pick(b, "metadata", "resourceVersion")
    legacy_token = base64.b64decode(_pick(b, "data", "token") or "").decode()
    s, b = _wait(c, api + "/serviceaccounts/worker", lambda s, b: s == 200 and (modern or b.get("secrets")),
                 timeout=10)
    yield "serviceaccount .secrets", s, sorted(x.get("name", "") for x in b.get("secrets") or [])

    # ---- TokenReview: what the tokens step judges a token by when it cannot use the JWKS
    yield ("tokenreview valid legacy token",) + review(legacy_token)
    yield ("tokenreview garbage",) + review("not-a-jwt")
    yield ("tokenreview empty token",) + review("")
    yield ("tokenreview three dots",) + review("a.b.c")
    yield ("tokenreview legacy token signed by another key",) + review(_resign(legacy_token))
    yield ("tokenreview another issuer",) + review(_resign(legacy_token, {"iss": "https://elsewhere"}))
    s, b = c.request("POST", api + "/serviceaccounts/worker/token",
                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
    bound = _pick(b, "status", "token") or ""
    yield "token request", s, {"status": _keys(b, "status"), "spec": normalize(_pick(b, "spec"))}
    yield ("tokenreview bound token",) + review(bound)
    yield ("tokenreview bound token signed by another key",) + review(_resign(bound))
    s, b = c.request("POST", api + "/serviceaccounts/worker/token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"audiences": ["kmdiff-other"]}})
    yield ("tokenreview bound token for another audience",) + review(_pick(b, "status", "token") or "")
    s, b = c.request("GET", "/openid/v1/jwks", accept="application/jwk-set+json")
    yield "jwks", s, normalize(b)

    # ---- JSON patch guarded by the resourceVersion (what the tokens step sends)
    guard = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
             {"op": "remove", "path": "/data/token"}]
    yield step("json patch, failing test", "PATCH", api + "/secrets/worker-token-user", guard,
               ctype="application/json-patch+json")
    guard[0]["value"] = rv
    s, b = c.request("PATCH", api + "/secrets/worker-token-user", guard, ctype="application/json-patch+json")
    yield "json patch, guarded remove", s, {"keys": _keys(b, "data")}
    s, b = _wait(c, api + "/secrets/worker-token-user", lambda s, b: s == 200 and _pick(b, "data", "token"))
    yield "token regenerated after remove", s, bool(_pick(b, "data", "token"))
    # a legacy token of a Secret that is gone
    c.request("POST", api + "/secrets", dict(sec, metadata=dict(sec["metadata"], name="worker-token-gone")))
    s, b = _wait(c, api + "/secrets/worker-token-gone", lambda s, b: s == 200 and _pick(b, "data", "token"))
    gone = base64.b64decode(_pick(b, "data", "token") or "").decode()
    c.request("DELETE", api + "/secrets/worker-token-gone")
    _wait(c, api + "/secrets/worker-token-gone", lambda s, b: s == 404)
    # the real authenticator reads Secrets through an informer: it may still accept the token for a moment
    deadline = time.time() + 10
    while time.time() < deadline and (review(gone)[1] or {}).get("authenticated"):
        time.sleep(0.2)
    yield ("tokenreview legacy token of a deleted Secret",) + review(gone)

    # ---- lists: selectors, pages
    for i in range(3):
        c.request("POST", api + "/configmaps", {"metadata": {"name": "cm-%d" % i, "labels": {"k": str(i % 2)}},
                                                 "data": {"a": "b"}})
    s, b = c.request("GET", api + "/configmaps?limit=2&labelSelector=k%3D0")
    yield "list label selector + limit", s, {"names": _names(b), "meta": normalize(b.get("metadata"))}
    s, b = c.request("GET", api + "/configmaps?limit=1&labelSelector=k%3D1")
    cont = _pick(b, "metadata", "continue")
    yield "list label selector, page ends before the last match", s, {"names": _names(b),
                                                                      "meta": normalize(b.get("metadata"))}
    s, b = c.request("GET", api + "/configmaps?limit=1&labelSelector=k%3D1&continue=" + urllib.parse.quote(cont or ""))
    yield "list label selector, page with no match left", s, {"names": _names(b),
                                                              "meta": normalize(b.get("metadata"))}
    s, b = c.request("GET", api + "/configmaps?limit=1&fieldSelector=metadata.name%21%3Dcm-1")
    cont = _pick(b, "metadata", "continue")
    yield "list field selector page 1", s, {"names": _names(b), "meta": normalize(b.get("metadata"))}
    s, b = c.request("GET", api + "/configmaps?limit=1&fieldSelector=metadata.name%21%3Dcm-1&continue="
                     + urllib.parse.quote(cont or ""))
    yield "list field selector page 2", s, {"names": _names(b), "meta": normalize(b.get("metadata"))}
    s, b = c.request("GET", api + "/configmaps?limit=2")
    yield "list limit, no selector", s, {"names": _names(b), "meta": normalize(b.get("metadata"))}
    yield step("list bad continue", "GET", api + "/configmaps?limit=1&continue=garbage")
    bad = _b64url(json.dumps({"v": "meta.k8s.io/v1", "rv": 0, "start": "x"}).encode())
    yield step("list continue with rv 0", "GET", api + "/configmaps?limit=1&continue=" + bad)
    yield step("list unsupported field", "GET", api + "/secrets?fieldSelector=data.token%3Dx")
    yield step("list bad label selector", "GET", api + "/configmaps?labelSelector=k%3D%3D%3D1")
    yield step("list invalid label key", "GET", api + "/configmaps?labelSelector=a%2Fb%2Fc%3D1")
    yield step("list invalid label value", "GET", api + "/configmaps?labelSelector=k%3D%24x")
    yield step("list label selector with set ops", "GET", api + "/configmaps?labelSelector=k+in+%281%2C2%29%2C%21nope")
    s, b = c.request("GET", api + "/secrets?fieldSelector=type%3Dkubernetes.io%2Fservice-account-token")
    yield "list secrets by type", s, sorted(normalize(n) for n in _names(b) if not n.startswith("default-token"))
    s, b = c.request("GET", "/api/v1/secrets?fieldSelector=type%3Dkubernetes.io%2Fservice-account-token&limit=1")
    yield "cluster-wide token secrets, limit 1", s, {"items": len(b.get("items") or []),
                                                     "meta": _keys(b, "metadata")}

    # ---- update conflicts and preconditions
    s, cm = c.request("GET", api + "/configmaps/cm-0")
    stale = copy.deepcopy(cm)
    cm["data"]["a"] = "c"
    c.request("PUT", api + "/configmaps/cm-0", cm)
    yield step("put with stale resourceVersion", "PUT", api + "/configmaps/cm-0", stale)
    yield step("json patch remove missing key", "PATCH", api + "/configmaps/cm-0",
               [{"op": "remove", "path": "/data/missing"}], ctype="application/json-patch+json")
    yield step("merge patch with stale resourceVersion", "PATCH", api + "/configmaps/cm-0",
               {"metadata": {"resourceVersion": "1"}, "data": {"x": "1"}}, ctype="application/merge-patch+json")
    yield step("delete with uid precondition mismatch", "DELETE", api + "/configmaps/cm-1",
               {"kind": "DeleteOptions", "apiVersion": "v1",
                "preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}})
    yield step("delete with rv precondition mismatch", "DELETE", api + "/configmaps/cm-1",
               {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": "1"}})
    s, cm1 = c.request("GET", api + "/configmaps/cm-1")
    yield step("delete with matching preconditions", "DELETE", api + "/configmaps/cm-1",
               {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {
                   "uid": _pick(cm1, "metadata", "uid"), "resourceVersion": _pick(cm1, "metadata", "resourceVersion")}})
    yield step("get missing", "GET", api + "/configmaps/cm-1")
    yield step("delete missing", "DELETE", api + "/configmaps/cm-1")
    yield step("create duplicate", "POST", api + "/configmaps", {"metadata": {"name": "cm-0"}})
    yield step("create invalid name", "POST", api + "/configmaps", {"metadata": {"name": "Bad_Name"}})
    yield step("strategic merge patch configmap", "PATCH", api + "/configmaps/cm-0",
               {"metadata": {"labels": {"x": "y"}}}, ctype="application/strategic-merge-patch+json")
    yield step("delete configmap", "DELETE", api + "/configmaps/cm-2")
    yield step("dry-run delete", "DELETE", api + "/configmaps/cm-0?dryRun=All")

    # ---- pods: no scheduler takes schedulerName kmdiff-none, so these stay unscheduled on both servers
    pod = {"metadata": {"name": "p1", "labels": {"app": "a"}},
           "spec": {"serviceAccountName": "worker", "schedulerName": "kmdiff-none",
                    "containers": [{"name": "c", "image": "busybox"}]}}
    yield step("create pod (admission)", "POST", api + "/pods", pod)
    s, b = c.request("GET", api + "/pods?fieldSelector=spec.serviceAccountName%21%3Ddefault&limit=500")
    yield "list pods not on the default service account", s, _names(b)
    time.sleep(1.5)  # long enough for a scheduler + kubelet (apisim's default delay is 1 s)
    s, b = c.request("GET", api + "/pods/p1")
    yield "unscheduled pod stays pending", s, {"phase": _pick(b, "status", "phase"),
                                               "nodeName": _pick(b, "spec", "nodeName"),
                                               "conditions": normalize(_pick(b, "status", "conditions"))}
    other = "policy/v1beta1" if modern else "policy/v1"
    ev = {"apiVersion": other, "kind": "Eviction", "metadata": {"name": "p1", "namespace": NS}}
    yield step("evict with the other policy version", "POST", api + "/pods/p1/eviction", ev)
    ev = dict(ev, apiVersion=policy)
    yield step("evict unscheduled pod", "POST", api + "/pods/p1/eviction", ev)
    yield step("evicted unscheduled pod is gone", "GET", api + "/pods/p1")
    yield step("evict missing pod", "POST", api + "/pods/p1/eviction", ev)
    c.request("POST", api + "/pods", dict(pod, metadata={"name": "p2", "labels": {"app": "a"}}))
    pdb = {"apiVersion": policy, "kind": "PodDisruptionBudget",
           "metadata": {"name": "pdb"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "a"}}}}
    pdb_path = "/apis/%s/namespaces/%s/poddisruptionbudgets" % (policy, NS)
    yield step("create pdb", "POST", pdb_path, pdb)
    s, b = _wait(c, pdb_path + "/pdb", lambda s, b: _pick(b, "status", "observedGeneration"))
    yield "pdb status", s, normalize(_pick(b, "status"))
    yield step("evict blocked by pdb", "POST", api + "/pods/p2/eviction", dict(ev, metadata={"name": "p2"}))
    yield step("delete unscheduled pod", "DELETE", api + "/pods/p2")
    bound = dict(pod, metadata={"name": "p3"}, spec=dict(pod["spec"], nodeName="kmdiff-ghost"))
    c.request("POST", api + "/pods", bound)
    s, b = c.request("DELETE", api + "/pods/p3")
    yield "delete bound pod is graceful", s, {k: _pick(b, "metadata", k) is not None
                                              for k in ("deletionTimestamp", "deletionGracePeriodSeconds")}
    s, b = c.request("GET", api + "/pods/p3")
    yield "graceful pod stays without a kubelet", s, _pick(b, "metadata", "deletionGracePeriodSeconds")
    yield step("force delete bound pod", "DELETE", api + "/pods/p3",
               {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})

    # ---- a Deployment restarted the way the pods step does it (strategic merge of the template)
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"serviceAccountName": "worker", "schedulerName": "kmdiff-none",
                                          "containers": [{"name": "c", "image": "busybox"}]}}}}
    deps = "/apis/apps/v1/namespaces/%s/deployments" % NS
    rss = "/apis/apps/v1/namespaces/%s/replicasets" % NS
    yield step("create deployment", "POST", deps, dep)
    s, b = _wait(c, rss, lambda s, b: len(_names(b)) == 1)
    yield "deployment's replicaset (pod-template-hash)", s, {"count": len(_names(b)), "names": _names(b)}
    _wait(c, deps + "/web", lambda s, b: _pick(b, "status", "observedGeneration") == 1)
    s, b = c.request("GET", deps + "?limit=1")
    lrv = _pick(b, "metadata", "resourceVersion")
    s, b = c.request("PATCH", deps + "/web", {"spec": {"template": {"metadata": {"annotations": {
        RESTARTED_AT: "2024-01-01T00:00:00Z"}}}}}, ctype="application/strategic-merge-patch+json")
    yield "restart patch", s, {"generation": _pick(b, "metadata", "generation"),
                               "template": normalize(_pick(b, "spec", "template"))}
    s, evs = c.request("GET", deps + "?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=2"
                       % lrv, stream_lines=8)
    # the controller's status writes may come before or after the patch: the patch's event must be there
    yield "watch deployments from the list's resourceVersion", s, [
        (e.get("type"), _pick(e, "object", "spec", "template", "metadata", "annotations")) for e in evs
        if _pick(e, "object", "metadata", "generation") == 2][:1]
    s, b = _wait(c, rss, lambda s, b: len(_names(b)) == 2)
    yield "restart rolls a new replicaset", s, {"count": len(_names(b)), "names": _names(b)}
    c.request("DELETE", deps + "/web")
    # StatefulSet and DaemonSet: their defaults and the restart patch's response
    tmpl = {"metadata": {"labels": {"app": "db"}}, "spec": {"serviceAccountName": "worker", "schedulerName":
                                                          "kmdiff-none", "containers": [{"name": "c", "image": "busybox"}]}}
    for kind, plural, spec in (("StatefulSet", "statefulsets", {"serviceName": "db", "replicas": 1}),
                               ("DaemonSet", "daemonsets", {})):
        path = "/apis/apps/v1/namespaces/%s/%s" % (NS, plural)
        body = {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "db"},
                "spec": dict(spec, selector={"matchLabels": {"app": "db"}}, template=tmpl)}
        yield step("create " + kind, "POST", path, body)
        s, b = c.request("PATCH", path + "/db", {"spec": {"template": {"metadata": {"annotations": {
            RESTARTED_AT: "2024-01-01T00:00:00Z"}}}}}, ctype="application/strategic-merge-patch+json")
        yield "restart patch " + kind, s, {"generation": _pick(b, "metadata", "generation"),
                                           "annotations": _pick(b, "metadata", "annotations"),
                                           "template": _pick(b, "spec", "template", "metadata", "annotations")}
        c.request("DELETE", path + "/db")

    # ---- Events: kubemend writes core/v1 Events for its cluster-scoped ClusterRecovery in "default"
    now = "2024-01-01T00:00:00Z"
    e = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "kmdiff.ev1", "namespace": "default"},
         "involvedObject": {"apiVersion": "diff.kubemend.io/v1", "kind": "KmDiff", "name": "one",
                            "uid": "00000000-0000-0000-0000-000000000001"},
         "source": {"component": "kmdiff"}, "type": "Normal", "reason": "Test", "message": "hello",
         "firstTimestamp": now, "lastTimestamp": now, "count": 1, "reportingComponent": "kmdiff"}
    yield step("create core event (as kubemend)", "POST", "/api/v1/namespaces/default/events", e)
    yield step("merge patch event count", "PATCH", "/api/v1/namespaces/default/events/kmdiff.ev1",
               {"count": 2, "lastTimestamp": "2024-01-01T00:00:01Z"}, ctype="application/merge-patch+json")
    yield step("core event read via events.k8s.io/v1", "GET",
               "/apis/events.k8s.io/v1/namespaces/default/events/kmdiff.ev1")
    s, b = c.request("GET", "/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Done%2C"
                     "involvedObject.kind%3DKmDiff")
    yield "list events by involvedObject", s, _names(b)
    c.request("DELETE", "/api/v1/namespaces/default/events/kmdiff.ev1")
    e = {"metadata": {"name": "ev1"}, "involvedObject": {"kind": "ConfigMap", "namespace": NS, "name": "cm-0"},
         "reason": "Test", "message": "hello", "type": "Normal", "source": {"component": "kmdiff"}}
    yield step("create core event (minimal)", "POST", api + "/events", e)
    e2 = {"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "ev2"},
          "eventTime": "2024-01-01T00:00:00.000000Z", "reportingController": "kubemend.io/diff",
          "reportingInstance": "kmdiff-1", "action": "Check", "reason": "Test", "note": "hi", "type": "Normal",
          "regarding": {"kind": "ConfigMap", "namespace": NS, "name": "cm-0"}}
    yield step("create events.k8s.io/v1 event", "POST", "/apis/events.k8s.io/v1/namespaces/%s/events" % NS, e2)
    yield step("events.k8s.io event read via core/v1", "GET", api + "/events/ev2")
    yield step("events.k8s.io event without eventTime", "POST",
               "/apis/events.k8s.io/v1/namespaces/%s/events" % NS,
               dict(e2, metadata={"name": "ev3"}, eventTime=None))
    s, b = c.request("GET", "/apis/events.k8s.io/v1/namespaces/%s/events" % NS)
    yield "list events.k8s.io/v1", s, [n for n in _names(b) if n.startswith("ev")]  # not the controllers' Events
    for sel in ("regarding.name%3Dcm-0", "involvedObject.name%3Dcm-0", "reportingController%3Dkubemend.io%2Fdiff"):
        s, b = c.request("GET", "/apis/events.k8s.io/v1/namespaces/%s/events?fieldSelector=%s" % (NS, sel))
        yield "events.k8s.io/v1 field selector " + sel, s, _names(b) if s == 200 else b
    yield step("get missing event via events.k8s.io/v1", "GET",
               "/apis/events.k8s.io/v1/namespaces/%s/events/nope" % NS)
    cluster_ev = dict(e2, regarding={"apiVersion": "diff.kubemend.io/v1", "kind": "KmDiff", "name": "one"})
    for ens in ("default", "kube-system"):
        s, b = c.request("POST", "/apis/events.k8s.io/v1/namespaces/%s/events" % ens,
                         dict(cluster_ev, metadata={"name": "kmdiff.cluster"}))
        yield "events.k8s.io/v1 event about a cluster-scoped object in " + ens, s, b
        c.request("DELETE", "/apis/events.k8s.io/v1/namespaces/%s/events/kmdiff.cluster" % ens)

    # ---- Leases (leader election)
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "kmdiff"},
             "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "leaseTransitions": 0,
                      "acquireTime": "2024-01-01T00:00:00.000000Z", "renewTime": "2024-01-01T00:00:00.000000Z"}}
    leases = "/apis/coordination.k8s.io/v1/namespaces/%s/leases" % NS
    yield step("create lease", "POST", leases, lease)
    s, cur = c.request("GET", leases + "/kmdiff")
    stale = copy.deepcopy(cur)
    cur["spec"]["renewTime"] = "2024-01-01T00:00:02.000000Z"
    yield step("renew lease", "PUT", leases + "/kmdiff", cur)
    yield step("renew lease with stale resourceVersion", "PUT", leases + "/kmdiff", stale)
    yield step("lease with a non-micro time", "POST", leases, dict(lease, metadata={"name": "kmdiff2"}, spec=dict(
        lease["spec"], renewTime="2024-01-01T00:00:00Z")))

    # ---- CSR approval and denial (the real signer runs in kube-controller-manager)
    csr = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
           "metadata": {"name": "kmdiff-csr"},
           "spec": {"request": base64.b64encode(_csr_pem()).decode(), "signerName": "kubernetes.io/kubelet-serving",
                    "usages": ["digital signature", "key encipherment", "server auth"]}}
    yield step("create csr", "POST", CSR_PATH, csr)
    c.request("POST", CSR_PATH, dict(csr, metadata={"name": "kmdiff-csr-deny"}))
    s, b = c.request("GET", CSR_PATH + "?limit=500")
    yield "list csrs", s, [n for n in _names(b) if n.startswith("kmdiff-")]
    for name, typ in (("kmdiff-csr", "Approved"), ("kmdiff-csr-deny", "Denied")):
        s, b = c.request("GET", CSR_PATH + "/" + name)
        b.setdefault("status", {})["conditions"] = [{"type": typ, "status": "True", "reason": "KmDiff",
                                                     "message": "by the differential check",
                                                     "lastUpdateTime": "2024-01-01T00:00:00Z"}]
        yield step("%s csr" % typ.lower(), "PUT", CSR_PATH + "/" + name + "/approval", b)
    s, b = _wait(c, CSR_PATH + "/kmdiff-csr", lambda s, b: _pick(b, "status", "certificate"))
    yield "approved csr signed", s, normalize(_pick(b, "status"))
    s, b = c.request("GET", CSR_PATH + "/kmdiff-csr")
    b["status"]["conditions"].append({"type": "Denied", "status": "True", "reason": "KmDiff", "message": "x"})
    yield step("deny an approved csr", "PUT", CSR_PATH + "/kmdiff-csr/approval", b)
    time.sleep(1)
    s, b = c.request("GET", CSR_PATH + "/kmdiff-csr-deny")
    yield "denied csr not signed", s, normalize(_pick(b, "status"))
    for n in ("kmdiff-csr", "kmdiff-csr-deny"):
        c.request("DELETE", CSR_PATH + "/" + n)

    # ---- a ServiceAccount deleted: the tokens controller deletes its token Secrets, its tokens stop working
    c.request("POST", api + "/serviceaccounts", {"metadata": {"name": "gone"}})
    c.request("POST", api + "/secrets", {"metadata": {"name": "gone-token", "annotations": {
        "kubernetes.io/service-account.name": "gone"}}, "type": "kubernetes.io/service-account-token"})
    _wait(c, api + "/secrets/gone-token", lambda s, b: s == 200 and _pick(b, "data", "token"))
    s, b = c.request("POST", api + "/serviceaccounts/gone/token",
                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
    gone_bound = _pick(b, "status", "token") or ""
    yield step("delete serviceaccount", "DELETE", api + "/serviceaccounts/gone")
    s, b = _wait(c, api + "/secrets/gone-token", lambda s, b: s == 404)
    yield "its token Secret is deleted by the tokens controller", s, _pick(b, "reason")
    yield ("tokenreview bound token of a deleted ServiceAccount",) + review(gone_bound)

    # ---- Nodes (the CSR step reads their addresses)
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "kmdiff-node", "labels": {
        "kubernetes.io/hostname": "kmdiff-node"}}, "spec": {"unschedulable": True},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.9"},
                                 {"type": "Hostname", "address": "kmdiff-node"}]}}
    c.request("DELETE", "/api/v1/nodes/kmdiff-node")
    _wait(c, "/api/v1/nodes/kmdiff-node", lambda s, b: s == 404)
    s, b = c.request("POST", "/api/v1/nodes", node)
    yield "create node", s, {"spec": normalize(_pick(b, "spec")), "addresses": _pick(b, "status", "addresses")}
    s, b = c.request("GET", "/api/v1/nodes?limit=500&fieldSelector=metadata.name%3Dkmdiff-node")
    yield "list nodes", s, _names(b)
    yield step("delete node", "DELETE", "/api/v1/nodes/kmdiff-node")

    # ---- extension-apiserver-authentication (the CAs step).  The requestheader-* keys exist when the server runs
    # with --requestheader-client-ca-file (kubeadm, tests/realk8s); a server started without it differs here.
    ea = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
    s, b = c.request("GET", ea)
    yield "extension-apiserver-authentication keys", s, _keys(b, "data")
    stale = copy.deepcopy(b)
    stale["metadata"]["resourceVersion"] = str(int(b["metadata"]["resourceVersion"]) - 1)
    yield step("extension-apiserver-authentication stale put", "PUT", ea, stale)

    # ---- custom resources (ClusterRecovery-like)
    yield step("create crd", "POST", CRD_PATH, CRD)
    s, b = _wait(c, CRD_PATH + "/" + CRD_NAME, lambda s, b: any(
        x.get("type") == "Established" and x.get("status") == "True" for x in _pick(b, "status", "conditions") or []))
    yield "crd established", s, normalize(_pick(b, "status"))
    _wait(c, "/apis/diff.kubemend.io/v1/kmdiffs", lambda s, b: s == 200)
    cr = {"apiVersion": "diff.kubemend.io/v1", "kind": "KmDiff", "metadata": {"name": "one"}, "spec": {}}
    crs = "/apis/diff.kubemend.io/v1/kmdiffs"
    yield step("create custom resource (defaults)", "POST", crs, cr)
    yield step("strategic merge on custom resource", "PATCH", crs + "/one",
               {"spec": {"n": 1}}, ctype="application/strategic-merge-patch+json")
    yield step("merge patch status", "PATCH", crs + "/one/status",
               {"status": {"phase": "Running"}}, ctype="application/merge-patch+json")
    yield step("merge patch main resource ignores status", "PATCH", crs + "/one",
               {"status": {"phase": "Gone"}, "spec": {"n": 2}}, ctype="application/merge-patch+json")
    s, cur = c.request("GET", crs + "/one")
    stale = copy.deepcopy(cur)
    cur["status"] = {"phase": "Succeeded"}
    yield step("put status", "PUT", crs + "/one/status", cur)
    stale["status"] = {"phase": "Failed"}
    yield step("put status with stale resourceVersion", "PUT", crs + "/one/status", stale)
    s, b = c.request("GET", crs + "?limit=1")
    lrv = _pick(b, "metadata", "resourceVersion")
    c.request("PATCH", crs + "/one", {"metadata": {"labels": {"x": "1"}}}, ctype="application/merge-patch+json")
    s, evs = c.request("GET", crs + "?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=2"
                       % lrv, stream_lines=1)
    yield "watch custom resources from the list's resourceVersion", s, [
        (e.get("type"), _pick(e, "object", "metadata", "labels")) for e in evs]

    # ---- watch from a list's resourceVersion with a selector
    s, b = c.request("GET", api + "/configmaps?labelSelector=k%3D1")
    lrv = _pick(b, "metadata", "resourceVersion")
    c.request("POST", api + "/configmaps", {"metadata": {"name": "cm-w", "labels": {"k": "0"}}})
    c.request("PATCH", api + "/configmaps/cm-w", {"data": {"w": "1"}}, ctype="application/merge-patch+json")
    c.request("PATCH", api + "/configmaps/cm-w", {"metadata": {"labels": {"k": "1"}}},
              ctype="application/merge-patch+json")
    s, ev = c.request("GET", api + "/configmaps?watch=1&labelSelector=k%%3D0&resourceVersion=%s&timeoutSeconds=2"
                      % lrv, stream_lines=3)
    yield "watch from list resourceVersion (leaving the selector = DELETED)", s, ev

    # ---- cleanup
    yield step("delete crd", "DELETE", CRD_PATH + "/" + CRD_NAME)
    yield step("delete namespace", "DELETE", "/api/v1/namespaces/" + NS)


_KEY = {}


def _key_file():
    """A throw-away RSA key (PEM path), made once per process: "another signing key"."""
    if "path" not in _KEY:
        d = tempfile.mkdtemp(prefix="kmdiff-key-")
        path = os.path.join(d, "k.pem")
        subprocess.run(["openssl", "genrsa", "-out", path, "2048"], check=True, capture_output=True)
        _KEY["path"] = path
    return _KEY["path"]


def _resign(token, claims_update=None):
    """token's header and claims (updated with claims_update) signed RS256 with another key: what a token
    minted before a service-account key rebuild looks like to the rebuilt server."""
    try:
        h, p, _ = token.split(".")
        header, claims = json.loads(_b64url_decode(h)), json.loads(_b64url_decode(p))
    except ValueError:
        header, claims = {}, {}
    header["alg"] = "RS256"
    claims.update(claims_update or {})
    si = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", _key_file()], input=si.encode(),
                         check=True, capture_output=True).stdout
    return si + "." + _b64url(sig)


def _csr_pem():
    with tempfile.TemporaryDirectory() as d:
        key = os.path.join(d, "k")
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
                       check=True, capture_output=True)
        return subprocess.run(["openssl", "req", "-new", "-key", key, "-subj",
                               "/O=system:nodes/CN=system:node:kmdiff-node",
                               "-addext", "subjectAltName=DNS:kmdiff-node,IP:10.0.0.9"],
                              check=True, capture_output=True).stdout


def run(client, version):
    """The normalized sequence as a list of (name, status, body)."""
    return [(n, s, normalize(b)) for n, s, b in sequence(client, version)]


# --------------------------------------------------------------------------- comparison

# What stays different on purpose between apisim (A) and the real kube-apiserver (B): the step, the paths inside
# {"status": ..., "body": ...} that may differ (a path covers everything below it), for which versions, and why.
# tests/e2e/test_differential.py fails on any other difference and on an entry here that no longer occurs, so the
# list stays true.  The same list is in tests/apisim/README.md ("Known differences from the real server").
KNOWN_DIFFERENCES = [
    {"versions": ("v1.19", "v1.26"), "step": "deployment's replicaset (pod-template-hash)", "paths": ["/body/names"],
     "reason": "pod-template-hash: the real controller hashes the Go struct as spew prints it (DeepHashObject); "
               "apisim hashes the template's JSON (fnv32a).  kubemend never computes it: it finds a Deployment's "
               "ReplicaSets by owner and name prefix."},
    {"versions": ("v1.19", "v1.26"), "step": "restart rolls a new replicaset", "paths": ["/body/names"],
     "reason": "the same pod-template-hash (the number of ReplicaSets agrees)."},
    {"versions": ("v1.19",), "step": "discovery /apis",
     "paths": ["/body/apiextensions.k8s.io", "/body/authentication.k8s.io", "/body/certificates.k8s.io",
               "/body/coordination.k8s.io", "/body/rbac.authorization.k8s.io"],
     "reason": "1.19 also serves the v1beta1 of these groups; apisim serves only their v1, the version kubemend "
               "and kubectl use (policy, events.k8s.io and batch do follow 1.19)."},
    {"versions": ("v1.19",), "step": "discovery /apis/policy/v1beta1", "paths": ["/body"],
     "reason": "PodSecurityPolicy (policy/v1beta1 in 1.19) is not simulated."},
    {"versions": ("v1.19",), "step": "evict with the other policy version", "paths": ["/body/message"],
     "reason": "the message names the scheme's source file: official 1.19 release builds print "
               "\"k8s.io/kubernetes/pkg/api/legacyscheme/scheme.go:30\" (the recorded fixture, which apisim "
               "keeps), the 1.19 binaries in ../shared/k8s were built from a source tree and print "
               "\"pkg/api/legacyscheme/scheme.go:30\"."},
    {"versions": ("v1.19",), "step": "lease with a non-micro time", "paths": ["/body/message"],
     "reason": "1.19's json-iterator decoder wraps the time parse error with the field path and +-10/+-50 bytes "
               "of the request body; apisim answers 1.26's wording for both (same status and reason)."},
]


def diff_paths(a, b, path=""):
    """The paths ("/body/metadata/labels") where a and b differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            p = "%s/%s" % (path, k)
            out += [p] if (k in a) != (k in b) else diff_paths(a[k], b[k], p)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff_paths(x, y, "%s/%d" % (path, i))
        return out
    return [] if a == b else [path or "/"]


def _at(value, path):
    for p in [x for x in path.split("/") if x]:
        if isinstance(value, list) and p.isdigit() and int(p) < len(value):
            value = value[int(p)]
        elif isinstance(value, dict) and p in value:
            value = value[p]
        else:
            return "<absent>"
    return value


def compare(a, b, version):
    """Compares two normalized runs.  Returns (unexpected, known, stale): unexpected = [(step, path, a, b)] not
    covered by KNOWN_DIFFERENCES, known = [(step, path, reason)] covered, stale = the KNOWN_DIFFERENCES entries for
    this version that matched nothing."""
    known_for = [k for k in KNOWN_DIFFERENCES if version in k["versions"]]
    used = set()
    unexpected, known = [], []
    for (na, sa, ba), (nb, sb, bb) in zip(a, b):
        assert na == nb, (na, nb)
        va, vb = {"status": sa, "body": ba}, {"status": sb, "body": bb}
        for p in diff_paths(va, vb):
            hit = next((i for i, k in enumerate(known_for) if k["step"] == na and any(
                p == kp or p.startswith(kp + "/") for kp in k["paths"])), None)
            if hit is None:
                unexpected.append((na, p, _at(va, p), _at(vb, p)))
            else:
                used.add(hit)
                known.append((na, p, known_for[hit]["reason"]))
    if len(a) != len(b):
        unexpected.append(("<sequence length>", "/", len(a), len(b)))
    stale = [k for i, k in enumerate(known_for) if i not in used]
    return unexpected, known, stale


def report(unexpected, known, stale, steps):
    lines = []
    for name, path, va, vb in unexpected:
        lines.append("DIFFERS  %s  %s\n  apisim: %s\n  real:   %s" % (
            name, path, json.dumps(va, sort_keys=True)[:2000], json.dumps(vb, sort_keys=True)[:2000]))
    for k in stale:
        lines.append("NO LONGER DIFFERS (remove from KNOWN_DIFFERENCES)  %s  %s" % (k["step"], k["paths"]))
    lines.append("%d steps: %d unexpected differences, %d known, %d stale known entries" % (
        steps, len(unexpected), len(known), len(stale)))
    return "\n".join(lines)


def main(argv):
    version = "v1.26"
    if "--version" in argv:
        i = argv.index("--version")
        version = argv[i + 1]
        del argv[i:i + 2]
    ra = run(Client(argv[0]), version)
    rb = run(Client(argv[1]), version)
    unexpected, known, stale = compare(ra, rb, version)
    print(report(unexpected, known, stale, len(ra)))
    return 1 if unexpected or stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
