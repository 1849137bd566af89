"""What the server says about the seed cluster (apisim), read with the admin certificate, and its canonical form:
an end state that can be compared between two simulator instances (uids, names of generated pods, certificates and
timestamps differ between instances; what must hold does not).

    raw = read(sim)                       # right before kubemend runs, and again once the cluster settled
    end = canonical(before_raw, after_raw, writes)
    diff(clean_end, end) -> [(key, clean value, this value)]

Keys of the canonical end state (values are small tuples/strings):
    object:<resource>/<ns>/<name>   "kept" (same uid as before the run), "new" (created by the run), "replaced"
                                    (same name, other uid); absent = deleted.  Stable kinds only (not pods, RS, ...)
    token:<ns>/<name>               (regenerated, valid by TokenReview)
    extauth:<key>                   the CA bundle as positions in the original bundle, other keys "unchanged"
    backup                          (number of backup ConfigMaps, each holding the original data)
    csr:<name>                      (condition types, reason, check named in the message, certificate issued)
    rollouts:<Kind>/<ns>/<name>     generation after - before (every rollout is one generation; counted by the
                                    server, not from kubemend's log)
    pods:<Kind>/<ns>/<name>         (pods, ready, pods that survived from before the run)
    ownerless:<ns>/<name>           "kept" | "deleted" | "replaced"
    evictions:<ns>/<owner>          successful evictions of that owner's pods (write log)
"""

import base64
import hashlib
import re

TOKEN_TYPE = "kubernetes.io/service-account-token"
STABLE = (
    ("secrets", "/api/v1/secrets"), ("configmaps", "/api/v1/configmaps"),
    ("serviceaccounts", "/api/v1/serviceaccounts"), ("namespaces", "/api/v1/namespaces"),
    ("nodes", "/api/v1/nodes"), ("csrs", "/apis/certificates.k8s.io/v1/certificatesigningrequests"),
    ("Deployment", "/apis/apps/v1/deployments"), ("StatefulSet", "/apis/apps/v1/statefulsets"),
    ("DaemonSet", "/apis/apps/v1/daemonsets"), ("Job", "/apis/batch/v1/jobs"),
    ("pdbs", "/apis/policy/v1/poddisruptionbudgets"),
)
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job")
# Objects the simulator's controllers or the harness itself replace on their own (not kubemend's doing).
IGNORED_CONFIGMAPS = ("kube-root-ca.crt",)
EXTAUTH = "extension-apiserver-authentication"


def get(sim, path):
    code, body = sim.request("GET", path, timeout=30)
    if code != 200:
        raise AssertionError("GET %s: %s %s" % (path, code, str(body)[:300]))
    return body


def items(sim, path):
    return get(sim, path)["items"]


def key_of(o):
    md = o["metadata"]
    return "%s/%s" % (md.get("namespace", ""), md["name"]) if md.get("namespace") else md["name"]


def pems(text):
    out, cur = [], []
    for line in (text or "").splitlines():
        if "BEGIN CERTIFICATE" in line:
            cur = [line]
        elif cur:
            cur.append(line)
            if "END CERTIFICATE" in line:
                out.append("\n".join(cur))
                cur = []
    return out


def read(sim):
    """Everything the canonical form needs, straight from the server."""
    raw = {"objects": {}, "pods": {}, "rs": {}, "workloads": {}, "tokens": {}, "csrs": {}, "configmaps": {}}
    for res, path in STABLE:
        for o in items(sim, path):
            raw["objects"]["%s/%s" % (res, key_of(o))] = o["metadata"]["uid"]
            if res in WORKLOADS:
                raw["workloads"]["%s/%s" % (res, key_of(o))] = o
            elif res == "csrs":
                raw["csrs"][o["metadata"]["name"]] = o
            elif res == "configmaps" and o["metadata"]["namespace"] == "kube-system":
                raw["configmaps"][o["metadata"]["name"]] = o.get("data") or {}
            elif res == "secrets" and o.get("type") == TOKEN_TYPE:
                tok = (o.get("data") or {}).get("token")
                raw["tokens"][key_of(o)] = {"uid": o["metadata"]["uid"], "token": tok,
                                            "sha": hashlib.sha256((tok or "").encode()).hexdigest()[:16]}
    for o in items(sim, "/api/v1/pods"):
        raw["pods"][key_of(o)] = o
    for o in items(sim, "/apis/apps/v1/replicasets"):
        raw["rs"][key_of(o)] = o
    return raw


def token_valid(sim, b64):
    if not b64:
        return False
    tok = base64.b64decode(b64).decode("utf-8", "replace")
    code, body = sim.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                             {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": tok}})
    return code == 201 and bool((body.get("status") or {}).get("authenticated"))


def pod_ready(p):
    conds = (p.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds) and \
        not p["metadata"].get("deletionTimestamp")


def owner_of(raw, p):
    """"Kind/ns/name" of the workload owning pod p (through its ReplicaSet for Deployments), or None."""
    ns = p["metadata"]["namespace"]
    for ref in p["metadata"].get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        if ref["kind"] == "ReplicaSet":
            rs = raw["rs"].get("%s/%s" % (ns, ref["name"]))
            for r2 in (rs or {}).get("metadata", {}).get("ownerReferences") or []:
                if r2.get("controller") and r2["kind"] == "Deployment":
                    return "Deployment/%s/%s" % (ns, r2["name"])
            return "ReplicaSet/%s/%s" % (ns, ref["name"])
        return "%s/%s/%s" % (ref["kind"], ns, ref["name"])
    return None


def settled(raw):
    """'' when every workload is rolled out, no pod is being deleted, every token Secret that is not being
    deleted holds a token and every approved CSR has its certificate; else what is still moving."""
    for k, w in raw["workloads"].items():
        st, spec = w.get("status") or {}, w.get("spec") or {}
        kind = k.split("/")[0]
        if kind == "Deployment":
            n = spec.get("replicas", 1)
            if not (st.get("observedGeneration") == w["metadata"]["generation"] and st.get("updatedReplicas") == n
                    and st.get("readyReplicas") == n and st.get("replicas") == n):
                return k
        elif kind == "StatefulSet":
            n = spec.get("replicas", 1)
            if not (st.get("readyReplicas") == n and st.get("updateRevision") == st.get("currentRevision")
                    and st.get("updatedReplicas", n) == n):
                return k
        elif kind == "DaemonSet":
            d = st.get("desiredNumberScheduled")
            if not (st.get("numberReady") == d and st.get("updatedNumberScheduled") == d
                    and st.get("observedGeneration") == w["metadata"]["generation"]):
                return k
    for k, p in raw["pods"].items():
        if p["metadata"].get("deletionTimestamp"):
            return "pod " + k
    for k, t in raw["tokens"].items():
        if not t["token"]:
            return "token " + k
    for n, c in raw["csrs"].items():
        types = {x["type"] for x in (c.get("status") or {}).get("conditions") or []}
        if types == {"Approved"} and not c["status"].get("certificate"):
            return "csr " + n
    return ""


def harness_made(key):
    """The extra operator replicas' ServiceAccounts and token Secrets (harness.Cluster.replica_kubeconfig)."""
    return re.search(r"kubemend-system/kubemend-r\d+", key) is not None


def canonical(sim, before, after, writes, users):
    """The canonical end state (see the module doc).  writes: the run's write log entries; users: kubemend's."""
    end = {}
    for k, uid in after["objects"].items():
        if k.startswith("configmaps/") and k.rsplit("/", 1)[1] in IGNORED_CONFIGMAPS or harness_made(k):
            continue
        b = before["objects"].get(k)
        end["object:" + k] = "kept" if b == uid else ("new" if b is None else "replaced")
    for k, t in after["tokens"].items():
        if harness_made(k):
            continue
        b = before["tokens"].get(k)
        end["token:" + k] = (b is not None and b["sha"] != t["sha"], token_valid(sim, t["token"]))
    orig = before["configmaps"].get(EXTAUTH) or {}
    now = after["configmaps"].get(EXTAUTH) or {}
    for key in sorted(set(orig) | set(now)):
        if key.endswith("-ca-file"):
            o = pems(orig.get(key))
            end["extauth:" + key] = tuple(o.index(p) if p in o else "foreign" for p in pems(now.get(key)))
        else:
            end["extauth:" + key] = "unchanged" if orig.get(key) == now.get(key) else "changed"
    backups = [d for n, d in after["configmaps"].items() if n.startswith(EXTAUTH + "-backup")]
    end["backup"] = (len(backups), all(d == orig for d in backups))
    for n, c in after["csrs"].items():
        conds = (c.get("status") or {}).get("conditions") or []
        end["csr:" + n] = (tuple(sorted(x["type"] for x in conds)), tuple(sorted(x.get("reason", "") for x in conds)),
                           tuple(sorted((x.get("message") or "").split(":")[0] for x in conds
                                        if x["type"] == "Denied")), bool(c["status"].get("certificate")))
    for k, w in after["workloads"].items():
        wb = before["workloads"].get(k)
        end["rollouts:" + k] = w["metadata"].get("generation", 0) - ((wb or {}).get("metadata", {}).get(
            "generation", 0) if wb else 0)
    groups = {}
    for k, p in after["pods"].items():
        owner = owner_of(after, p)
        if owner is None:
            b = before["pods"].get(k)
            end["ownerless:" + k] = "kept" if b and b["metadata"]["uid"] == p["metadata"]["uid"] else "replaced"
            continue
        g = groups.setdefault(owner, [0, 0, 0])
        g[0] += 1
        g[1] += pod_ready(p)
        b = before["pods"].get(k)
        g[2] += bool(b and b["metadata"]["uid"] == p["metadata"]["uid"])
    for k, p in before["pods"].items():
        if owner_of(before, p) is None and "ownerless:" + k not in end:
            end["ownerless:" + k] = "deleted"
        owner = owner_of(before, p)
        if owner and owner not in groups:
            groups[owner] = [0, 0, 0]
    for owner, g in groups.items():
        end["pods:" + owner] = tuple(g)
    ev = {}
    for w in writes:
        if w["subresource"] == "eviction" and w["user"] in users:
            p = before["pods"].get("%s/%s" % (w["namespace"], w["name"]))
            owner = owner_of(before, p) if p else None
            ev[owner or w["name"]] = ev.get(owner or w["name"], 0) + 1
    for owner, n in ev.items():
        end["evictions:" + owner] = n
    return end


def diff(clean, end):
    keys = sorted(set(clean) | set(end))
    return [(k, clean.get(k), end.get(k)) for k in keys if clean.get(k) != end.get(k)]


def classify(clean, end):
    """(lost, double) counts of a diff: lost = objects deleted/replaced that the clean run kept, ownerless pods
    not kept, workloads with fewer ready pods; double = workloads rolled out (or pods evicted) more often."""
    lost = double = 0
    for k, c, e in diff(clean, end):
        if k.startswith("object:") and c == "kept":
            lost += 1
        elif k.startswith("ownerless:") and c == "kept":
            lost += 1
        elif k.startswith("pods:") and c and (e is None or e[1] < c[1]):
            lost += 1
        elif k.startswith(("rollouts:", "evictions:")) and (e or 0) > (c or 0):
            double += (e or 0) - (c or 0)
    return lost, double
