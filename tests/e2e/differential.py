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

VOLATILE_META = {"uid", "resourceVersion", "creationTimestamp", "managedFields", "selfLink", "generation",
                 "deletionTimestamp"}
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
UID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
GEN_RE = re.compile(r"^(kmdiff-[a-z-]+?-)[a-z0-9]{5}$")


def normalize(value, key=None):
    """A copy of a response body with what must differ between two servers replaced by placeholders."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("managedFields", "selfLink"):
                continue
            if k in ("uid", "resourceVersion", "continue") and isinstance(v, str) and v:
                out[k] = "<%s>" % k
            elif k in ("token", "certificate", "request", "ca.crt", "client-ca-file", "kubeconfig", "n", "x",
                       "y", "kid", "caBundle") and isinstance(v, str):
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
        return UID_RE.sub("<uid>", value)
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


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "kmdiffs.diff.kubemend.io"},
    "spec": {"group": "diff.kubemend.io", "scope": "Cluster",
             "names": {"kind": "KmDiff", "plural": "kmdiffs", "singular": "kmdiff", "listKind": "KmDiffList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "default": {}, "properties": {
                                   "mode": {"type": "string", "default": "Regenerate"},
                                   "n": {"type": "integer", "default": 5}}},
                               "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}]}}


def sequence(c, version):
    """Runs the sequence against client c; yields (step name, status, normalized body) one by one.
    version: "v1.19" or "v1.26" (what the server should behave like)."""
    api = "/api/v1/namespaces/" + NS
    modern = version != "v1.19"

    def step(name, method, path, body=None, **kw):
        status, resp = c.request(method, path, body, **kw)
        return name, status, resp

    # cleanup of an earlier run (ignored)
    c.request("DELETE", "/api/v1/namespaces/" + NS)
    _wait(c, "/api/v1/namespaces/" + NS, lambda s, b: s == 404, timeout=60)
    c.request("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + CRD["metadata"]["name"])
    _wait(c, "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + CRD["metadata"]["name"],
          lambda s, b: s == 404, timeout=60)

    # ---- discovery: the groups/versions kubemend uses
    s, b = c.request("GET", "/apis")
    groups = {g["name"]: sorted(v["version"] for v in g["versions"]) for g in (b or {}).get("groups", [])}
    wanted = ["apps", "policy", "events.k8s.io", "certificates.k8s.io", "coordination.k8s.io",
              "authentication.k8s.io", "apiextensions.k8s.io"]
    yield "discovery /apis", s, {g: groups.get(g) for g in wanted}
    s, b = c.request("GET", "/api/v1")
    res = {r["name"]: sorted(r.get("verbs", [])) for r in (b or {}).get("resources", [])}
    yield "discovery /api/v1", s, {r: res.get(r) for r in ("pods", "pods/eviction", "pods/status", "secrets",
                                                           "configmaps", "nodes", "serviceaccounts/token",
                                                           "namespaces", "events")}

    # ---- namespace, service account, token Secret
    yield step("create namespace", "POST", "/api/v1/namespaces", {"metadata": {"name": NS}})
    yield step("create serviceaccount", "POST", api + "/serviceaccounts", {"metadata": {"name": "worker"}})
    _wait(c, api + "/serviceaccounts/default", lambda s, b: s == 200)
    sec = {"metadata": {"name": "worker-token-user", "annotations": {
        "kubernetes.io/service-account.name": "worker"}}, "type": "kubernetes.io/service-account-token"}
    yield step("create token secret", "POST", api + "/secrets", sec)
    s, b = _wait(c, api + "/secrets/worker-token-user", lambda s, b: s == 200 and _pick(b, "data", "token"))
    yield "token secret filled by the controller", s, {
        "keys": sorted((b.get("data") or {}).keys()) if isinstance(b, dict) else b,
        "annotations": sorted(_pick(b, "metadata", "annotations") or {})}
    rv = _pick(b, "metadata", "resourceVersion")

    # ---- JSON patch guarded by the resourceVersion (what the tokens step sends)
    guard = [{"op": "test", "path": "/metadata/resourceVersion", "value": "1"},
             {"op": "remove", "path": "/data/token"}]
    yield step("json patch, failing test", "PATCH", api + "/secrets/worker-token-user", guard,
               ctype="application/json-patch+json")
    guard[0]["value"] = rv
    s, b = c.request("PATCH", api + "/secrets/worker-token-user", guard, ctype="application/json-patch+json")
    yield "json patch, guarded remove", s, {"keys": sorted((b.get("data") or {}).keys()) if isinstance(b, dict)
                                            else b}
    s, b = _wait(c, api + "/secrets/worker-token-user", lambda s, b: s == 200 and _pick(b, "data", "token"))
    yield "token regenerated after remove", s, bool(_pick(b, "data", "token"))

    # ---- lists: selectors, pages
    for i in range(3):
        c.request("POST", api + "/configmaps", {"metadata": {"name": "cm-%d" % i, "labels": {"k": str(i % 2)}},
                                                 "data": {"a": "b"}})
    s, b = c.request("GET", api + "/configmaps?limit=2&labelSelector=k%3D0")
    yield "list label selector + limit", s, {"names": _names(b), "meta": normalize(b.get("metadata"))}
    s, b = c.request("GET", api + "/configmaps?limit=1&fieldSelector=metadata.name%21%3Dcm-1")
    cont = _pick(b, "metadata", "continue")
    yield "list field selector page 1", s, {"names": _names(b), "meta": normalize(b.get("metadata"))}
    s, b = c.request("GET", api + "/configmaps?limit=1&fieldSelector=metadata.name%21%3Dcm-1&continue="
                     + urllib.parse.quote(cont or ""))
    yield "list field selector page 2", s, {"names": _names(b), "meta": normalize(b.get("metadata"))}
    yield step("list bad continue", "GET", api + "/configmaps?limit=1&continue=garbage")
    yield step("list unsupported field", "GET", api + "/secrets?fieldSelector=data.token%3Dx")
    s, b = c.request("GET", api + "/secrets?fieldSelector=type%3Dkubernetes.io%2Fservice-account-token")
    yield "list secrets by type", s, sorted(n for n in _names(b) if not n.startswith("default-token"))

    # ---- update conflicts and preconditions
    s, cm = c.request("GET", api + "/configmaps/cm-0")
    stale = copy.deepcopy(cm)
    cm["data"]["a"] = "c"
    c.request("PUT", api + "/configmaps/cm-0", cm)
    yield step("put with stale resourceVersion", "PUT", api + "/configmaps/cm-0", stale)
    yield step("delete with uid precondition mismatch", "DELETE", api + "/configmaps/cm-1",
               {"kind": "DeleteOptions", "apiVersion": "v1",
                "preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}})
    yield step("delete with rv precondition mismatch", "DELETE", api + "/configmaps/cm-1",
               {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": "1"}})
    yield step("delete configmap", "DELETE", api + "/configmaps/cm-1")
    yield step("get missing", "GET", api + "/configmaps/cm-1")
    yield step("create duplicate", "POST", api + "/configmaps", {"metadata": {"name": "cm-0"}})
    yield step("create invalid name", "POST", api + "/configmaps", {"metadata": {"name": "Bad_Name"}})
    yield step("strategic merge patch configmap", "PATCH", api + "/configmaps/cm-0",
               {"metadata": {"labels": {"x": "y"}}}, ctype="application/strategic-merge-patch+json")

    # ---- pods: unscheduled delete / eviction are immediate
    # schedulerName: no scheduler binds these pods (the real server here has none)
    pod = {"metadata": {"name": "p1", "labels": {"app": "a"}},
           "spec": {"serviceAccountName": "worker", "schedulerName": "kmdiff-none",
                    "containers": [{"name": "c", "image": "busybox"}]}}
    s, b = c.request("POST", api + "/pods", pod)
    vols = sorted(v.get("name", "").rsplit("-", 1)[0] for v in _pick(b, "spec", "volumes") or [])
    yield "create pod (admission)", s, {"volumes": vols, "sa": _pick(b, "spec", "serviceAccountName"),
                                        "phase": _pick(b, "status", "phase")}
    ev = {"apiVersion": "policy/v1" if modern else "policy/v1beta1", "kind": "Eviction",
          "metadata": {"name": "p1", "namespace": NS}}
    yield step("evict unscheduled pod", "POST", api + "/pods/p1/eviction", ev)
    yield step("evicted unscheduled pod is gone", "GET", api + "/pods/p1")
    c.request("POST", api + "/pods", dict(pod, metadata={"name": "p2", "labels": {"app": "a"}}))
    pdb = {"apiVersion": "policy/v1" if modern else "policy/v1beta1", "kind": "PodDisruptionBudget",
           "metadata": {"name": "pdb"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "a"}}}}
    pdb_path = "/apis/%s/namespaces/%s/poddisruptionbudgets" % (pdb["apiVersion"], NS)
    yield step("create pdb", "POST", pdb_path, pdb)
    _wait(c, pdb_path + "/pdb", lambda s, b: _pick(b, "status", "observedGeneration"))
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

    # ---- TokenReview
    tr = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": "not-a-jwt"}}
    yield step("tokenreview garbage", "POST", "/apis/authentication.k8s.io/v1/tokenreviews", tr)
    s, b = c.request("POST", api + "/serviceaccounts/worker/token",
                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
    tok = _pick(b, "status", "token")
    yield "token request", s, sorted((b.get("status") or {}).keys()) if isinstance(b, dict) else b
    tr["spec"]["token"] = tok or ""
    s, b = c.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", tr)
    yield "tokenreview valid", s, normalize(_pick(b, "status"))
    s, b = c.request("GET", "/openid/v1/jwks", accept="application/jwk-set+json")
    yield "jwks", s, normalize(b)

    # ---- events through both APIs
    e = {"metadata": {"name": "ev1"}, "involvedObject": {"kind": "ConfigMap", "namespace": NS, "name": "cm-0"},
         "reason": "Test", "message": "hello", "type": "Normal", "source": {"component": "kmdiff"}}
    yield step("create core event", "POST", api + "/events", e)
    s, b = c.request("GET", "/apis/events.k8s.io/v1/namespaces/%s/events/ev1" % NS)
    yield "core event read via events.k8s.io/v1", s, {k: normalize(b.get(k)) for k in
                                                      ("reason", "note", "type", "regarding")} if s == 200 else b

    # ---- CSR approval
    csr_pem = _csr_pem()
    csr = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
           "metadata": {"name": "kmdiff-csr"},
           "spec": {"request": base64.b64encode(csr_pem).decode(), "signerName": "kubernetes.io/kubelet-serving",
                    "usages": ["digital signature", "key encipherment", "server auth"]}}
    c.request("DELETE", "/apis/certificates.k8s.io/v1/certificatesigningrequests/kmdiff-csr")
    yield step("create csr", "POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", csr)
    s, b = c.request("GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests/kmdiff-csr")
    b.setdefault("status", {})["conditions"] = [{"type": "Approved", "status": "True", "reason": "KmDiff",
                                                 "message": "approved by the differential check"}]
    yield step("approve csr", "PUT", "/apis/certificates.k8s.io/v1/certificatesigningrequests/kmdiff-csr/approval",
               b)
    c.request("DELETE", "/apis/certificates.k8s.io/v1/certificatesigningrequests/kmdiff-csr")

    # ---- custom resources
    yield step("create crd", "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD)
    _wait(c, "/apis/diff.kubemend.io/v1/kmdiffs", lambda s, b: s == 200)
    cr = {"apiVersion": "diff.kubemend.io/v1", "kind": "KmDiff", "metadata": {"name": "one"}, "spec": {}}
    yield step("create custom resource (defaults)", "POST", "/apis/diff.kubemend.io/v1/kmdiffs", cr)
    yield step("strategic merge on custom resource", "PATCH", "/apis/diff.kubemend.io/v1/kmdiffs/one",
               {"spec": {"n": 1}}, ctype="application/strategic-merge-patch+json")
    yield step("merge patch status", "PATCH", "/apis/diff.kubemend.io/v1/kmdiffs/one/status",
               {"status": {"phase": "Running"}}, ctype="application/merge-patch+json")
    yield step("merge patch main resource ignores status", "PATCH", "/apis/diff.kubemend.io/v1/kmdiffs/one",
               {"status": {"phase": "Gone"}, "spec": {"n": 2}}, ctype="application/merge-patch+json")

    # ---- watch from a list's resourceVersion: the change after it, then a bookmark-free end
    s, b = c.request("GET", api + "/configmaps?labelSelector=k%3D1")
    lrv = _pick(b, "metadata", "resourceVersion")
    c.request("PATCH", api + "/configmaps/cm-2", {"data": {"w": "1"}}, ctype="application/merge-patch+json")
    s, ev = c.request("GET", api + "/configmaps?watch=1&labelSelector=k%%3D0&resourceVersion=%s&timeoutSeconds=2"
                      % lrv, stream_lines=1)
    yield "watch from list resourceVersion", s, normalize(ev)

    # ---- cleanup
    c.request("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + CRD["metadata"]["name"])
    yield step("delete namespace", "DELETE", "/api/v1/namespaces/" + NS)


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


def compare(a, b):
    """Steps whose (status, body) differ: a list of (name, a_value, b_value)."""
    diffs = []
    for (na, sa, ba), (nb, sb, bb) in zip(a, b):
        assert na == nb
        if (sa, ba) != (sb, bb):
            diffs.append((na, (sa, ba), (sb, bb)))
    return diffs


def main(argv):
    version = "v1.26"
    if "--version" in argv:
        i = argv.index("--version")
        version = argv[i + 1]
        del argv[i:i + 2]
    ra = run(Client(argv[0]), version)
    rb = run(Client(argv[1]), version)
    diffs = compare(ra, rb)
    for name, va, vb in diffs:
        print("== %s\n  A: %s\n  B: %s" % (name, json.dumps(va, sort_keys=True)[:1500],
                                           json.dumps(vb, sort_keys=True)[:1500]))
    print("%d steps, %d differ" % (len(ra), len(diffs)))
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
