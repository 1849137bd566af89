"""Generator for large clusters: `--scenario gen:namespaces=2000,pods=50000,secrets=20000,stale=0.5,nodes=1000,csrs=1000,seed=1`.

Parameters (all optional):
  namespaces   app namespaces (default 10), named ns-00001..
  pods         total pods (default 100); grouped into Deployments of `deploy` pods (default 5) -> one ReplicaSet
               each, all Running/Ready with statuses filled (steady state: the controllers have nothing to do)
  secrets      kubernetes.io/service-account-token Secrets (default = namespaces * 2), `<sa>-token-xxxxx`
  stale        fraction of token Secrets signed by the OLD service-account key (default 0.5); stale > 0 means the
               PKI is rebuilt first (old key kept for signing) and extension-apiserver-authentication holds old+new
  nodes        nodes node-00001.. with InternalIP/Hostname (default 3)
  csrs         pending kubelet-serving CSRs (default 0); `forged` (default 0.2) of them ask for another node's IP
  defaultsa    fraction of Deployments running on the namespace's default SA (default 0.5)
  seed         RNG seed (default 1)
Objects go through Store.create (one write each, status included); JWTs are signed in-process (ES256 with
--sa-key-type ec is ~10x cheaper than RS256), CSRs are built in-process (csrgen.build_csr_fast) with one key per
node.  Prints `apisim: generated ... in N.NN s` to stderr and returns the scenario summary.
"""

import random
import sys
import time

from . import csrgen
from .controllers import (ANN_REVISION, ANN_SA_NAME, ANN_SA_UID, SA_TOKEN, b64, front_proxy_ca, now_rfc3339,
                          template_hash)
from .pki import legacy_token_claims

try:
    from .resources import apply_defaults
except ImportError:  # pragma: no cover - older store without server-side defaults
    apply_defaults = None

DEFAULTS = {"namespaces": 10, "pods": 100, "secrets": None, "stale": 0.5, "nodes": 3, "csrs": 0, "forged": 0.2,
            "deploy": 5, "defaultsa": 0.5, "seed": 1}


def parse_params(text):
    out = dict(DEFAULTS)
    for part in filter(None, (text or "").split(",")):
        if "=" not in part:
            raise ValueError("gen parameter %r is not key=value" % part)
        k, v = part.split("=", 1)
        k = k.strip()
        if k not in DEFAULTS:
            raise ValueError("unknown gen parameter %r (known: %s)" % (k, ", ".join(sorted(DEFAULTS))))
        out[k] = float(v) if k in ("stale", "forged", "defaultsa") else int(v)
    if out["secrets"] is None:
        out["secrets"] = out["namespaces"] * 2
    return out


def _rand5(rng):
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))


def generate(sim, text):
    p = parse_params(text)
    t0 = time.monotonic()
    rng = random.Random(p["seed"])
    store, pki = sim.store, sim.pki
    summary = {"name": "gen:" + text, "counts": {}, "staleTokenSecrets": 0, "freshTokenSecrets": 0,
               "forgedCsrs": [], "validCsrs": []}
    counts = summary["counts"]

    bulk = getattr(store, "bulk_create", None)

    def create(res, obj, need_result=True):
        counts[res] = counts.get(res, 0) + 1
        if not need_result and bulk is not None:
            bulk(res, [obj])
            return None
        return store.create(res, obj)

    old_key = None
    if p["stale"] > 0:
        front_proxy_ca(pki)
        old_key = pki.current_sa_key
        pki.rebuild()
    front_proxy_ca(pki)
    ca_b64 = b64(pki.ca_cert_pem)
    now = now_rfc3339()

    # nodes
    nodes, node_ips = [], {}
    for i in range(p["nodes"]):
        name = "node-%05d" % (i + 1)
        ip = "172.%d.%d.%d" % (16 + (i >> 16), (i >> 8) & 255, i & 255)
        nodes.append(name)
        node_ips[name] = ip
        create("nodes", {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                               "kubernetes.io/os": "linux"}},
                         "status": {"addresses": [{"type": "InternalIP", "address": ip},
                                                  {"type": "Hostname", "address": name}],
                                    "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": now,
                                                    "lastTransitionTime": now, "reason": "KubeletReady",
                                                    "message": "kubelet is posting ready status"}]}})

    # namespaces + service accounts
    namespaces = ["ns-%05d" % (i + 1) for i in range(p["namespaces"])]
    sa_uids = {}
    existing = [o["metadata"]["name"] for o in store.list("namespaces")]
    for ns in existing + [n for n in ["default", "kube-system"] + namespaces if n not in existing]:
        if store.get("namespaces", None, ns) is None:
            create("namespaces", {"metadata": {"name": ns}})
        for sa in (("default", "app") if ns.startswith("ns-") else ("default",)):
            o = store.get("serviceaccounts", ns, sa)
            if o is None:
                o = create("serviceaccounts", {"metadata": {"name": sa, "namespace": ns}})
            sa_uids[(ns, sa)] = o["metadata"]["uid"]
        if getattr(sim, "profile", "modern") == "modern" and store.get("configmaps", ns, "kube-root-ca.crt") is None:
            create("configmaps", {"metadata": {"name": "kube-root-ca.crt", "namespace": ns},
                                  "data": {"ca.crt": pki.ca_cert_pem}})

    # token secrets
    n_stale = int(round(p["secrets"] * p["stale"]))
    for i in range(p["secrets"]):
        ns = namespaces[i % len(namespaces)] if namespaces else "default"
        sa = "app" if (i // max(1, len(namespaces))) % 2 == 0 and ns.startswith("ns-") else "default"
        name = "%s-token-%s" % (sa, _rand5(rng))
        key = old_key if i < n_stale else None
        token = pki.sign_jwt(legacy_token_claims(ns, sa, sa_uids[(ns, sa)], name), key=key)
        create("secrets", {"metadata": {"name": name, "namespace": ns,
                                        "annotations": {ANN_SA_NAME: sa, ANN_SA_UID: sa_uids[(ns, sa)]}},
                           "type": SA_TOKEN, "data": {"ca.crt": ca_b64, "namespace": b64(ns), "token": b64(token)}},
               need_result=False)
        summary["staleTokenSecrets" if key is not None else "freshTokenSecrets"] += 1

    # deployments -> replicasets -> pods (steady state); with a rebuild they are older than it (created a day
    # before: kubemend restarts pods created before the new CA's notBefore)
    if old_key is not None:
        store.creation_offset = -86400.0
    remaining = p["pods"]
    di = 0
    ip_n = 0
    while remaining > 0 and namespaces:
        size = min(p["deploy"], remaining)
        remaining -= size
        ns = namespaces[di % len(namespaces)]
        name = "app-%05d" % (di + 1)
        di += 1
        sa = "default" if rng.random() < p["defaultsa"] else "app"
        tmpl = {"metadata": {"labels": {"app": name}},
                "spec": {"serviceAccountName": sa, "containers": [{"name": "main",
                                                                   "image": "registry.example/app:1.0"}]}}
        dep = {
            "metadata": {"name": name, "namespace": ns, "labels": {"app": name},
                         "annotations": {ANN_REVISION: "1"}},
            "spec": {"replicas": size, "selector": {"matchLabels": {"app": name}}, "template": tmpl},
            "status": {"observedGeneration": 1, "replicas": size, "updatedReplicas": size, "readyReplicas": size,
                       "availableReplicas": size, "conditions": [
                           {"type": "Available", "status": "True", "lastUpdateTime": now, "lastTransitionTime": now,
                            "reason": "MinimumReplicasAvailable", "message": "Deployment has minimum availability."},
                           {"type": "Progressing", "status": "True", "lastUpdateTime": now,
                            "lastTransitionTime": now, "reason": "NewReplicaSetAvailable",
                            "message": ""}]}}
        if apply_defaults is not None:
            apply_defaults("apps/deployments", dep)
        stored = dep["spec"]["template"]
        h = template_hash(stored)
        rs_name = "%s-%s" % (name, h)
        dep["status"]["conditions"][1]["message"] = 'ReplicaSet "%s" has successfully progressed.' % rs_name
        d = create("apps/deployments", dep)
        rtmpl = {"metadata": dict(stored["metadata"], labels={"app": name, "pod-template-hash": h}),
                 "spec": stored["spec"]}
        rs = create("apps/replicasets", {
            "metadata": {"name": rs_name, "namespace": ns, "labels": {"app": name, "pod-template-hash": h},
                         "annotations": {"deployment.kubernetes.io/desired-replicas": str(size),
                                         "deployment.kubernetes.io/max-replicas": str(size + (size + 3) // 4),
                                         ANN_REVISION: "1"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                              "uid": d["metadata"]["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {"replicas": size, "selector": {"matchLabels": {"app": name, "pod-template-hash": h}},
                     "template": rtmpl},
            "status": {"replicas": size, "fullyLabeledReplicas": size, "readyReplicas": size,
                       "availableReplicas": size, "observedGeneration": 1}})
        oref = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name, "uid": rs["metadata"]["uid"],
                 "controller": True, "blockOwnerDeletion": True}]
        for _ in range(size):
            node = nodes[rng.randrange(len(nodes))] if nodes else None
            ip_n += 1
            n = ip_n + (1 << 16)
            pod_ip = "10.%d.%d.%d" % ((n >> 16) & 255, (n >> 8) & 255, n & 255)
            vol = "kube-api-access-" + _rand5(rng)
            spec = {"serviceAccountName": sa, "serviceAccount": sa,
                    "volumes": [{"name": vol, "projected": {"sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                            "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}], "defaultMode": 420}}],
                    "containers": [{"name": "main", "image": "registry.example/app:1.0", "volumeMounts": [
                        {"name": vol, "readOnly": True,
                         "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}]}
            status = {"phase": "Pending", "qosClass": "BestEffort"}
            if node:
                spec["nodeName"] = node
                status = {"phase": "Running", "conditions": [
                    {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
                    for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")],
                    "hostIP": node_ips[node], "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "startTime": now,
                    "containerStatuses": [{"name": "main", "state": {"running": {"startedAt": now}},
                                           "lastState": {}, "ready": True, "restartCount": 0,
                                           "image": "registry.example/app:1.0", "imageID": "",
                                           "containerID": "containerd://%064x" % ip_n, "started": True}],
                    "qosClass": "BestEffort"}
            create("pods", {"metadata": {"name": "%s-%s" % (rs_name, _rand5(rng)), "namespace": ns,
                                         "labels": {"app": name, "pod-template-hash": h}, "ownerReferences": oref},
                            "spec": spec, "status": status}, need_result=False)

    store.creation_offset = 0.0

    # CSRs
    keys = {}
    n_forged = int(round(p["csrs"] * p["forged"]))
    for i in range(p["csrs"]):
        if not nodes:
            break
        node = nodes[i % len(nodes)]
        label = "gen-%d" % (i % 8)
        key = keys.get(label)
        if key is None:
            key = keys[label] = csrgen.FastKey(csrgen.key_for(label))
        ips = [node_ips[node]]
        forged = i < n_forged and len(nodes) > 1
        if forged:
            ips.append(node_ips[nodes[(i + 1) % len(nodes)]])
        name = "csr-%05d" % (i + 1)
        pem = csrgen.build_csr_fast(key, "system:node:" + node, ["system:nodes"], [node], ips)
        create("certificates.k8s.io/certificatesigningrequests", {
            "metadata": {"name": name},
            "spec": {"request": csrgen.csr_request_b64(pem), "signerName": "kubernetes.io/kubelet-serving",
                     "usages": ["digital signature", "key encipherment", "server auth"],
                     "username": "system:node:" + node, "groups": ["system:nodes", "system:authenticated"]}})
        summary["forgedCsrs" if forged else "validCsrs"].append(name)

    # extension-apiserver-authentication
    olds = list(getattr(pki, "old_ca_cert_pems", []) or [])[-1:]
    oldf = list(getattr(pki, "old_front_proxy_ca_cert_pems", []) or [])[-1:]
    data = {"client-ca-file": "".join(olds + [pki.ca_cert_pem]),
            "requestheader-allowed-names": '["front-proxy-client"]',
            "requestheader-client-ca-file": "".join(oldf + [front_proxy_ca(pki)]),
            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
            "requestheader-group-headers": '["X-Remote-Group"]',
            "requestheader-username-headers": '["X-Remote-User"]'}
    if store.get("configmaps", "kube-system", "extension-apiserver-authentication") is None:
        create("configmaps", {"metadata": {"name": "extension-apiserver-authentication",
                                           "namespace": "kube-system"}, "data": data})
    dt = time.monotonic() - t0
    summary["loadSeconds"] = round(dt, 3)
    total = sum(counts.values())
    sys.stderr.write("apisim: generated %d objects (%s) in %.2f s\n" % (
        total, ", ".join("%s=%d" % kv for kv in sorted(counts.items())), dt))
    sys.stderr.flush()
    return summary
