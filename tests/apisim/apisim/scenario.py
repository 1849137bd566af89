"""Declarative YAML scenarios -> a whole cluster in the Store (schema: README.md "Scenarios and controllers").

load_scenario(sim, name_or_path) accepts "seed" (apisim/scenarios/seed.yaml), any other file name in
apisim/scenarios/ (with or without .yaml), a path to a YAML file, a dict, or "gen:k=v,..." (generate.py).
Everything is written through sim.store; workloads are created in their steady state (ReplicaSets, pods Running and
Ready, statuses filled) so that the controllers find nothing to do at start.  Returns a summary dict.
"""

import base64
import copy
import os
import random
import time

import yaml

from . import csrgen
from .controllers import (ANN_COMPLETE_AFTER, ANN_MIRROR, ANN_REVISION, ANN_SA_NAME, ANN_SA_UID, SA_TOKEN,
                          Controllers, b64, front_proxy_ca, now_rfc3339, running_pod_status, template_hash)

SCENARIO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenarios")
SECTIONS = ("namespaces", "nodes", "serviceAccounts", "configMaps", "objects", "secrets", "workloads", "pods",
            "pdbs", "csrs")
CSR_KINDS = csrgen.KINDS + ("badPEM", "custom")


# How long before the PKI rebuild the objects of a scenario's `before` section were created (seconds).
BEFORE_AGE = 86400

TOP_KEYS = ("name", "description", "profile", "seed", "pkiRebuild", "before", "after",
            "extensionApiserverAuthentication", "controllers")
CONTROLLER_OPTIONS = {"kubeletDelay": "kubelet_delay", "graceCap": "grace_cap", "tokenDelay": "token_delay",
                      "tokenRate": "token_rate",
                      "csrSignDelay": "csr_sign_delay", "trustResync": "trust_resync",
                      "csrAutoApprove": "csr_auto_approve", "evictionV1": "eviction_v1"}


class ScenarioError(ValueError):
    pass


def resolve(name_or_path):
    """The scenario dict for a name/path/dict."""
    if isinstance(name_or_path, dict):
        return name_or_path
    cands = [name_or_path]
    if not os.path.isabs(name_or_path):
        cands += [os.path.join(SCENARIO_DIR, name_or_path), os.path.join(SCENARIO_DIR, name_or_path + ".yaml")]
    for c in cands:
        if os.path.isfile(c):
            with open(c) as f:
                doc = yaml.safe_load(f)
            if not isinstance(doc, dict):
                raise ScenarioError("%s: a scenario is a YAML mapping" % c)
            return doc
    raise ScenarioError("scenario %r not found (looked in %s)" % (name_or_path, SCENARIO_DIR))


def load_scenario(sim, name_or_path):
    if isinstance(name_or_path, str) and name_or_path.startswith("gen:"):
        from . import generate
        return generate.generate(sim, name_or_path[4:])
    doc = resolve(name_or_path)
    b = Builder(sim, doc)
    return b.build()


def pod_template(spec, app):
    """A workload's pod template from a scenario spec: label app, one container (container, image),
    serviceAccountName, automount: false, nodeSelector, restartPolicy, podAnnotations, tolerateAll (tolerate every
    taint, as calico/kube-proxy do), tolerateControlPlane (kubeadm's control-plane/master NoSchedule taints)."""
    labels = {"app": app}
    labels.update(spec.get("labels") or {})
    pspec = {"containers": [{"name": spec.get("container", app),
                             "image": spec.get("image", "registry.example/%s:1.0" % app)}]}
    if spec.get("serviceAccountName"):
        pspec["serviceAccountName"] = spec["serviceAccountName"]
    if spec.get("automount") is False:
        pspec["automountServiceAccountToken"] = False
    if spec.get("nodeSelector"):
        pspec["nodeSelector"] = dict(spec["nodeSelector"])
    if spec.get("restartPolicy"):
        pspec["restartPolicy"] = spec["restartPolicy"]
    if spec.get("tolerateAll"):
        pspec["tolerations"] = [{"operator": "Exists"}]
    elif spec.get("tolerateControlPlane"):
        pspec["tolerations"] = [{"key": "node-role.kubernetes.io/" + r, "effect": "NoSchedule"}
                                for r in ("master", "control-plane")]
    tmpl = {"metadata": {"labels": labels}, "spec": pspec}
    if spec.get("podAnnotations"):
        tmpl["metadata"]["annotations"] = dict(spec["podAnnotations"])
    return tmpl


class Builder:
    def __init__(self, sim, doc):
        self.sim = sim
        self.store = sim.store
        self.pki = sim.pki
        self.doc = doc
        self.rng = random.Random(doc.get("seed", 1))
        ctl = getattr(sim, "controllers", None)
        # an explicit non-default --profile (sim.profile == "legacy") or sim.profile_from_cli wins over the scenario
        profile = (ctl.profile if ctl is not None else getattr(sim, "profile", None)) or "modern"
        if doc.get("profile") and not getattr(sim, "profile_from_cli", False) and profile == "modern":
            profile = doc["profile"]
        self.ctl = ctl if ctl is not None else Controllers(sim, profile=profile)
        self.ctl.profile = profile  # the server's profile too (served API versions)
        self.profile = profile
        self.phase = "after"
        self.node_ips = {}
        self.pod_ip = 0
        self.keys = {}        # phase -> SA key object
        self.summary = {"name": doc.get("name", ""), "profile": self.profile, "pkiRebuild": bool(doc.get(
            "pkiRebuild")), "counts": {}, "staleTokenSecrets": [], "freshTokenSecrets": [], "userCreatedTokenSecrets": [],
            "malformedTokenSecrets": [], "deletingTokenSecrets": [], "missingAnnotationSecrets": [],
            "validCsrs": [], "forgedCsrs": [], "otherCsrs": [], "ownerlessPods": [], "mirrorPods": []}

    # ---------------------------------------------------------------- top level
    def build(self):
        t0 = time.monotonic()
        doc = self.doc
        unknown = set(doc) - set(SECTIONS) - set(TOP_KEYS)
        if unknown:
            raise ScenarioError("unknown scenario keys: %s" % ", ".join(sorted(unknown)))
        self.controller_options(doc.get("controllers") or {})
        if doc.get("pkiRebuild"):
            self.phase = "before"
            self.keys["old"] = self.pki.current_sa_key
            front_proxy_ca(self.pki)
            # what existed before the rebuild is older than it (kubemend tells stale pods by creationTimestamp <
            # the new CA's notBefore)
            self.store.creation_offset = -BEFORE_AGE
            try:
                self.apply(doc.get("before") or {})
            finally:
                self.store.creation_offset = 0.0
            self.pki.rebuild()
            front_proxy_ca(self.pki)
            self.phase = "after"
            self.apply(doc.get("after") or {})
            top = {k: doc[k] for k in SECTIONS if k in doc}
            if top:
                self.apply(top)
        else:
            self.apply({k: doc[k] for k in SECTIONS if k in doc})
            self.apply(doc.get("after") or {})
        self.finish_tokens()
        if self.profile == "modern":
            for ns in self.store.list("namespaces"):
                n = ns["metadata"]["name"]
                if self.store.get("configmaps", n, "kube-root-ca.crt") is None:
                    self.create("configmaps", {"metadata": {"name": "kube-root-ca.crt", "namespace": n},
                                               "data": {"ca.crt": self.pki.ca_cert_pem}})
        state = doc.get("extensionApiserverAuthentication",
                        "old+new" if doc.get("pkiRebuild") else "new")
        self.ext_auth(state)
        self.summary["loadSeconds"] = round(time.monotonic() - t0, 3)
        return self.summary

    def finish_tokens(self):
        """As the tokens controller after the restart: ca.crt of every token Secret = the current CA (tokens are
        never re-signed); then classify every token Secret by the key that signed it."""
        import json as _json
        from .pki import b64url_decode
        ca = b64(self.pki.ca_cert_pem)
        cur_kid = self.pki.current_sa_key.kid
        old_kids = {k.kid for k in getattr(self.pki, "old_sa_keys", [])}
        buckets = {"staleTokenSecrets": [], "freshTokenSecrets": [], "forgedTokenSecrets": []}
        for s in self.store.list("secrets"):
            if s.get("type") != SA_TOKEN:
                continue
            m = s["metadata"]
            if (s.get("data") or {}).get("ca.crt") != ca:
                def fn(o):
                    o.setdefault("data", {})["ca.crt"] = ca
                    return True
                self.store.mutate("secrets", m["namespace"], m["name"], fn)
            try:
                tok = base64.b64decode(s["data"]["token"]).decode()
                kid = _json.loads(b64url_decode(tok.split(".")[0])).get("kid")
            except Exception:  # noqa: BLE001 - malformed / missing
                continue
            ref = "%s/%s" % (m["namespace"], m["name"])
            if kid == cur_kid:
                buckets["freshTokenSecrets"].append(ref)
            elif kid in old_kids:
                buckets["staleTokenSecrets"].append(ref)
            else:
                buckets["forgedTokenSecrets"].append(ref)
        self.summary.update(buckets)

    def controller_options(self, opts):
        """`controllers:` section: kubeletDelay, graceCap, tokenDelay, csrSignDelay, trustResync, csrAutoApprove,
        evictionV1, staleApiserver (bool), staleInterval (seconds)."""
        ctl = self.ctl
        for k, v in opts.items():
            if k in CONTROLLER_OPTIONS:
                ctl.opts[CONTROLLER_OPTIONS[k]] = v
                if k == "kubeletDelay":
                    ctl.kubelet_delay = float(v)
                    if ctl.opts.get("grace_cap") is None:
                        ctl.grace_cap = float(v)
                if k == "graceCap":
                    ctl.grace_cap = float(v)
            elif k not in ("staleApiserver", "staleInterval"):
                raise ScenarioError("unknown controllers option %r" % k)
        if opts.get("staleApiserver"):
            ctl.set_stale_apiserver(True, opts.get("staleInterval"))

    def count(self, what, n=1):
        self.summary["counts"][what] = self.summary["counts"].get(what, 0) + n

    def legacy_tokens(self):
        """profile legacy: every ServiceAccount has its auto-generated token Secret, signed with the key of the
        current phase (what the < 1.24 tokens controller did while that key was current)."""
        if self.profile != "legacy":
            return
        for sa in self.store.list("serviceaccounts"):
            m = sa["metadata"]
            if sa.get("secrets"):
                continue
            self.secret({"namespace": m["namespace"], "name": "%s-token-%s" % (m["name"], self.rand5()),
                         "serviceAccount": m["name"], "signedBy": "current", "referenced": True})

    def apply(self, part):
        self._apply(part)
        self.legacy_tokens()

    def _apply(self, part):
        unknown = set(part) - set(SECTIONS)
        if unknown:
            raise ScenarioError("unknown scenario sections: %s" % ", ".join(sorted(unknown)))
        for ns in part.get("namespaces") or []:
            self.namespace(ns)
        for n in part.get("nodes") or []:
            self.node(n)
        for sa in part.get("serviceAccounts") or []:
            self.service_account(sa)
        for cm in part.get("configMaps") or []:
            self.create("configmaps", {"metadata": {"name": cm["name"], "namespace": cm["namespace"],
                                                    "labels": cm.get("labels") or {}},
                                       "data": cm.get("data") or {}})
        for o in part.get("objects") or []:
            self.create(o["resource"], copy.deepcopy(o["object"]))
        for s in part.get("secrets") or []:
            self.secret(s)
        for w in part.get("workloads") or []:
            self.workload(w)
        for p in part.get("pods") or []:
            self.bare_pod(p)
        for p in part.get("pdbs") or []:
            self.pdb(p)
        for c in part.get("csrs") or []:
            self.csr(c)

    # ---------------------------------------------------------------- primitives
    def create(self, res, obj):
        out = self.store.create(res, obj)
        self.count(res)
        return out

    def set_status(self, res, obj, status):
        m = obj["metadata"]

        def fn(o):
            o["status"] = status
            return True
        return self.store.mutate(res, m.get("namespace"), m["name"], fn, subresource="status")

    def namespace(self, spec):
        if isinstance(spec, str):
            spec = {"name": spec}
        if self.store.get("namespaces", None, spec["name"]) is None:
            self.create("namespaces", {"metadata": {"name": spec["name"], "labels": spec.get("labels") or {}}})
        if self.store.get("serviceaccounts", spec["name"], "default") is None:
            self.create("serviceaccounts", {"metadata": {"name": "default", "namespace": spec["name"]}})

    def node(self, spec):
        name = spec["name"]
        ip = spec.get("internalIP") or "192.0.2.%d" % (10 + len(self.node_ips))
        self.node_ips[name] = ip
        labels = {"kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
        labels.update(spec.get("labels") or {})
        now = now_rfc3339()
        addrs = [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": spec.get("hostname", name)}]
        for extra in spec.get("extraAddresses") or []:
            addrs.append(dict(extra))
        down = bool(spec.get("down"))
        node = {"metadata": {"name": name, "labels": labels}, "spec": {"podCIDR": spec.get("podCIDR", "")},
                "status": {"addresses": addrs, "conditions": [{
                    "type": "Ready", "status": "Unknown" if down else "True",
                    "lastHeartbeatTime": now, "lastTransitionTime": now,
                    "reason": "NodeStatusUnknown" if down else "KubeletReady",
                    "message": "Kubelet stopped posting node status." if down else
                    "kubelet is posting ready status"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                    "nodeInfo": {"kubeletVersion": spec.get("kubeletVersion", "v1.28.4"),
                                 "operatingSystem": "linux", "architecture": "amd64"}}}
        if not node["spec"]["podCIDR"]:
            del node["spec"]["podCIDR"]
        if down:
            node["spec"]["taints"] = [{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]
            self.ctl._down_set().add(name)
        if spec.get("controlPlane"):
            labels["node-role.kubernetes.io/control-plane"] = ""
        self.create("nodes", node)

    def sa_key(self, signed_by):
        if signed_by in ("current", None):
            return self.pki.current_sa_key
        if signed_by == "old":
            k = self.pki.old_sa_key() if hasattr(self.pki, "old_sa_key") else None
            return k or self.pki.current_sa_key
        if signed_by == "forged":
            k = self.keys.get("forged")
            if k is None:
                k = self.keys["forged"] = self.pki.new_sa_key()
            return k
        raise ScenarioError("signedBy must be old|current|forged|none|malformed, not %r" % signed_by)

    def service_account(self, spec):
        ns, name = spec["namespace"], spec["name"]
        self.namespace(ns)
        sa = {"metadata": {"name": name, "namespace": ns, "labels": spec.get("labels") or {}}}
        if spec.get("automount") is False:
            sa["automountServiceAccountToken"] = False
        existing = self.store.get("serviceaccounts", ns, name)
        if existing is None:
            self.create("serviceaccounts", sa)
        tok = spec.get("tokenSecret")
        if tok:
            sname = tok if isinstance(tok, str) else "%s-token-%s" % (name, self.rand5())
            self.secret({"namespace": ns, "name": sname, "serviceAccount": name,
                         "signedBy": spec.get("signedBy", "current"), "referenced": True})

    def rand5(self):
        return "".join(self.rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))

    def secret(self, spec):
        ns, name = spec["namespace"], spec["name"]
        self.namespace(ns)
        stype = spec.get("type", SA_TOKEN if spec.get("serviceAccount") else "Opaque")
        obj = {"metadata": {"name": name, "namespace": ns, "labels": spec.get("labels") or {}}, "type": stype,
               "data": {k: b64(v) for k, v in (spec.get("stringData") or {}).items()}}
        if spec.get("finalizers") or spec.get("deleting"):
            obj["metadata"]["finalizers"] = spec.get("finalizers") or ["kubemend.test/hold"]
        if stype == SA_TOKEN:
            sa_name = spec["serviceAccount"]
            sa = self.store.get("serviceaccounts", ns, sa_name)
            if sa is None:
                self.service_account({"namespace": ns, "name": sa_name})
                sa = self.store.get("serviceaccounts", ns, sa_name)
            ann = {ANN_SA_NAME: sa_name, ANN_SA_UID: sa["metadata"]["uid"]}
            missing = spec.get("missingAnnotations")
            if missing == "uid":
                ann.pop(ANN_SA_UID)
            elif missing:
                raise ScenarioError("missingAnnotations: only 'uid' (the apiserver rejects a token Secret without "
                                    "%s)" % ANN_SA_NAME)
            if spec.get("wrongUid"):
                ann[ANN_SA_UID] = "00000000-0000-0000-0000-000000000000"
            obj["metadata"]["annotations"] = ann
            signed = spec.get("signedBy", "current")
            data = obj["data"]
            data["ca.crt"] = b64(self.pki.ca_cert_pem)
            data["namespace"] = b64(ns)
            if signed == "malformed":
                data["token"] = b64("not-a-jwt")
                self.summary["malformedTokenSecrets"].append("%s/%s" % (ns, name))
            elif signed != "none":
                key = self.sa_key(signed)
                data["token"] = b64(self.ctl.sign_legacy_token(ns, sa_name, sa["metadata"]["uid"], name, key=key))
            if spec.get("userCreated"):
                self.summary["userCreatedTokenSecrets"].append("%s/%s" % (ns, name))
            if missing:
                self.summary["missingAnnotationSecrets"].append("%s/%s" % (ns, name))
        self.create("secrets", obj)
        if stype == SA_TOKEN and spec.get("referenced", not spec.get("userCreated")) and \
                not spec.get("wrongUid"):
            def add_ref(o):
                refs = o.get("secrets") or []
                if not any(r.get("name") == name for r in refs):
                    refs.append({"name": name})
                o["secrets"] = refs
                return True
            self.store.mutate("serviceaccounts", ns, spec["serviceAccount"], add_ref)
        if spec.get("deleting"):
            self.store.delete("secrets", ns, name)
            self.summary["deletingTokenSecrets"].append("%s/%s" % (ns, name))

    # ---------------------------------------------------------------- pods
    def next_pod_ip(self):
        self.pod_ip += 1
        n = self.pod_ip + (244 << 16)
        return "10.%d.%d.%d" % ((n >> 16) & 255, (n >> 8) & 255, n & 255)

    def pick_node(self, i):
        nodes = [n for n in sorted(self.node_ips) if not self.ctl.is_node_down(n)]
        return nodes[i % len(nodes)] if nodes else None

    def make_pod(self, ns, name, template, owner=None, node=None, extra_labels=None, phase="Running",
                 annotations=None):
        tm = (template or {}).get("metadata") or {}
        spec = copy.deepcopy((template or {}).get("spec") or {})
        md = {"name": name, "namespace": ns, "labels": dict(tm.get("labels") or {})}
        if extra_labels:
            md["labels"].update(extra_labels)
        ann = dict(tm.get("annotations") or {})
        ann.update(annotations or {})
        if ann:
            md["annotations"] = ann
        if owner is not None:
            md["ownerReferences"] = [owner]
        if node:
            spec["nodeName"] = node
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec,
               "status": {"phase": "Pending", "qosClass": "BestEffort"}}
        self.ctl.admit_pod(pod)
        created = self.create("pods", pod)
        if phase == "Running" and node and not self.ctl.is_node_down(node):
            st = running_pod_status(created, self.node_ips.get(node, "192.0.2.1"), self.next_pod_ip(),
                                    now_rfc3339())
            created = self.set_status("pods", created, st)
        elif node:
            st = {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": now_rfc3339()}]}
            created = self.set_status("pods", created, st)
        return created

    def ensure_sa(self, ns, sa):
        if sa and self.store.get("serviceaccounts", ns, sa) is None:
            self.service_account({"namespace": ns, "name": sa})

    def workload(self, spec):
        kind = spec["kind"]
        ns, name = spec["namespace"], spec["name"]
        self.namespace(ns)
        self.ensure_sa(ns, spec.get("serviceAccountName"))
        tmpl = pod_template(spec, spec.get("app", name))
        sel = {"matchLabels": {"app": spec.get("app", name)}}
        if kind == "Deployment":
            self.deployment(ns, name, spec, tmpl, sel)
        elif kind == "StatefulSet":
            self.statefulset(ns, name, spec, tmpl, sel)
        elif kind == "DaemonSet":
            self.daemonset(ns, name, spec, tmpl, sel)
        elif kind == "Job":
            self.job(ns, name, spec, tmpl)
        else:
            raise ScenarioError("workload kind must be Deployment|StatefulSet|DaemonSet|Job, not %r" % kind)

    @staticmethod
    def oref(obj, api, kind):
        return {"apiVersion": api, "kind": kind, "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"],
                "controller": True, "blockOwnerDeletion": True}

    def deployment(self, ns, name, spec, tmpl, sel):
        replicas = int(spec.get("replicas", 1))
        d = self.create("apps/deployments", {"metadata": {"name": name, "namespace": ns,
                                                          "labels": {"app": spec.get("app", name)},
                                                          "annotations": {ANN_REVISION: "1"}},
                                             "spec": {"replicas": replicas, "selector": sel, "template": tmpl}})
        stored = d["spec"]["template"]
        h = template_hash(stored)
        rtmpl = copy.deepcopy(stored)
        rtmpl["metadata"].setdefault("labels", {})["pod-template-hash"] = h
        rsel = copy.deepcopy(sel)
        rsel["matchLabels"]["pod-template-hash"] = h
        rs_name = "%s-%s" % (name, h)
        surge = replicas - (replicas * 75) // 100 if replicas else 0
        rs = self.create("apps/replicasets", {
            "metadata": {"name": rs_name, "namespace": ns, "labels": dict(rtmpl["metadata"]["labels"]),
                         "annotations": {"deployment.kubernetes.io/desired-replicas": str(replicas),
                                         "deployment.kubernetes.io/max-replicas": str(replicas + max(surge, 0)),
                                         ANN_REVISION: "1"},
                         "ownerReferences": [self.oref(d, "apps/v1", "Deployment")]},
            "spec": {"replicas": replicas, "selector": rsel, "template": rtmpl}})
        ready = 0
        for i in range(replicas):
            node = self.pick_node(self.rng.randrange(1 << 16))
            p = self.make_pod(ns, "%s-%s" % (rs_name, self.rand5()), rtmpl, self.oref(rs, "apps/v1", "ReplicaSet"),
                              node)
            ready += 1 if p["status"].get("phase") == "Running" else 0
        self.set_status("apps/replicasets", rs, {k: v for k, v in (
            ("replicas", replicas), ("fullyLabeledReplicas", replicas), ("readyReplicas", ready),
            ("availableReplicas", ready), ("observedGeneration", 1)) if v or k in ("replicas", "observedGeneration")})
        now = now_rfc3339()
        st = {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas, "readyReplicas": ready,
              "availableReplicas": ready, "unavailableReplicas": replicas - ready, "conditions": [
                  {"type": "Available", "status": "True" if ready >= replicas - replicas // 4 else "False",
                   "lastUpdateTime": now, "lastTransitionTime": now,
                   "reason": "MinimumReplicasAvailable" if ready >= replicas - replicas // 4 else
                   "MinimumReplicasUnavailable",
                   "message": "Deployment has minimum availability." if ready >= replicas - replicas // 4 else
                   "Deployment does not have minimum availability."},
                  {"type": "Progressing", "status": "True", "lastUpdateTime": now, "lastTransitionTime": now,
                   "reason": "NewReplicaSetAvailable",
                   "message": 'ReplicaSet "%s" has successfully progressed.' % rs_name}]}
        self.set_status("apps/deployments", d, {k: v for k, v in st.items() if v or k == "observedGeneration"})

    def statefulset(self, ns, name, spec, tmpl, sel):
        replicas = int(spec.get("replicas", 1))
        s = self.create("apps/statefulsets", {"metadata": {"name": name, "namespace": ns},
                                              "spec": {"replicas": replicas, "serviceName": name, "selector": sel,
                                                       "template": tmpl}})
        rev = "%s-%s" % (name, template_hash(s["spec"]["template"]))
        ready = 0
        for i in range(replicas):
            pname = "%s-%d" % (name, i)
            t = copy.deepcopy(s["spec"]["template"])
            t["spec"]["hostname"] = pname
            t["spec"]["subdomain"] = name
            p = self.make_pod(ns, pname, t, self.oref(s, "apps/v1", "StatefulSet"),
                              self.pick_node(self.rng.randrange(1 << 16)),
                              {"controller-revision-hash": rev, "statefulset.kubernetes.io/pod-name": pname})
            ready += 1 if p["status"].get("phase") == "Running" else 0
        self.set_status("apps/statefulsets", s, {"observedGeneration": 1, "replicas": replicas,
                                                 "readyReplicas": ready, "currentReplicas": replicas,
                                                 "updatedReplicas": replicas, "currentRevision": rev,
                                                 "updateRevision": rev, "collisionCount": 0,
                                                 "availableReplicas": ready})

    def daemonset(self, ns, name, spec, tmpl, sel):
        ds = self.create("apps/daemonsets", {"metadata": {"name": name, "namespace": ns},
                                             "spec": {"selector": sel, "template": tmpl}})
        h = template_hash(ds["spec"]["template"])
        node_sel = (tmpl.get("spec") or {}).get("nodeSelector") or {}
        nodes = []
        for n in sorted(self.node_ips):
            node = self.store.get("nodes", None, n)
            if all((node["metadata"].get("labels") or {}).get(k) == v for k, v in node_sel.items()):
                nodes.append(n)
        ready = 0
        desired = 0
        for n in nodes:
            p = self.make_pod(ns, "%s-%s" % (name, self.rand5()), ds["spec"]["template"],
                              self.oref(ds, "apps/v1", "DaemonSet"), n,
                              {"controller-revision-hash": h, "pod-template-generation": "1"})
            if not self.ctl.is_node_down(n):
                desired += 1
                ready += 1 if p["status"].get("phase") == "Running" else 0
        st = {"currentNumberScheduled": desired, "numberMisscheduled": 0, "desiredNumberScheduled": desired,
              "numberReady": ready, "observedGeneration": 1, "updatedNumberScheduled": desired,
              "numberAvailable": ready, "numberUnavailable": desired - ready}
        self.set_status("apps/daemonsets", ds, {k: v for k, v in st.items() if v or k in (
            "currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady",
            "observedGeneration")})

    def job(self, ns, name, spec, tmpl):
        tmpl["spec"].setdefault("restartPolicy", "Never")
        if spec.get("completeAfterSeconds") is not None:
            tmpl["metadata"].setdefault("annotations", {})[ANN_COMPLETE_AFTER] = str(spec["completeAfterSeconds"])
        j = self.create("batch/jobs", {"metadata": {"name": name, "namespace": ns},
                                       "spec": {"completions": 1, "parallelism": 1, "backoffLimit": 6,
                                                "template": tmpl}})
        uid = j["metadata"]["uid"]
        self.make_pod(ns, "%s-%s" % (name, self.rand5()), j["spec"]["template"], self.oref(j, "batch/v1", "Job"),
                      self.pick_node(self.rng.randrange(1 << 16)), {"controller-uid": uid, "job-name": name})
        self.set_status("batch/jobs", j, {"startTime": now_rfc3339(), "active": 1})

    def bare_pod(self, spec):
        ns, name = spec["namespace"], spec["name"]
        self.namespace(ns)
        self.ensure_sa(ns, spec.get("serviceAccountName"))
        tmpl = pod_template(spec, spec.get("app", name))
        node = spec.get("node") or self.pick_node(self.rng.randrange(1 << 16))
        ann = dict(spec.get("annotations") or {})
        owner = None
        if spec.get("mirror"):
            ann.setdefault("kubernetes.io/config.source", "file")
            h = template_hash(tmpl)
            ann.setdefault("kubernetes.io/config.hash", h)
            ann.setdefault(ANN_MIRROR, h)
            ann.setdefault("kubernetes.io/config.seen", now_rfc3339())
            nobj = self.store.get("nodes", None, node)
            if nobj is not None:
                owner = {"apiVersion": "v1", "kind": "Node", "name": node, "uid": nobj["metadata"]["uid"],
                         "controller": True}
            tmpl["spec"].pop("serviceAccountName", None)
            self.summary["mirrorPods"].append("%s/%s" % (ns, name))
        else:
            self.summary["ownerlessPods"].append("%s/%s" % (ns, name))
        self.make_pod(ns, name, tmpl, owner, node, phase=spec.get("phase", "Running"), annotations=ann)

    def pdb(self, spec):
        body = {"metadata": {"name": spec["name"], "namespace": spec["namespace"]},
                "spec": {"selector": {"matchLabels": dict(spec["selector"])}}}
        for k in ("minAvailable", "maxUnavailable"):
            if k in spec:
                body["spec"][k] = spec[k]
        pdb = self.create("policy/poddisruptionbudgets", body)
        self.set_status("policy/poddisruptionbudgets", pdb, self.ctl.compute_pdb_status(
            pdb, [p for p in self.store.list("pods", spec["namespace"])
                  if all((p["metadata"].get("labels") or {}).get(k) == v for k, v in spec["selector"].items())]))

    # ---------------------------------------------------------------- CSRs
    def csr(self, spec):
        kind = spec.get("kind", "valid")
        if kind not in CSR_KINDS:
            raise ScenarioError("csr kind %r not in %s" % (kind, ", ".join(CSR_KINDS)))
        node = spec.get("node")
        other = spec.get("otherNode")
        ip = self.node_ips.get(node, "192.0.2.250")
        key = csrgen.key_for(node or "_nonode")
        f = csrgen.kind_fields("valid" if kind in ("badPEM", "custom") else kind, node, ip, other,
                               self.node_ips.get(other), email=spec.get("email"), uri=spec.get("uri"),
                               dns=spec.get("dns"))
        cn, orgs, dns, ips, emails, uris = f["cn"], f["orgs"], f["dns"], f["ips"], f["emails"], f["uris"]
        usages, signer = f["usages"], f["signer"]
        username = "system:node:%s" % node
        groups = ["system:nodes", "system:authenticated"]
        if kind == "nonNodeRequester":
            username = spec.get("requester", "system:serviceaccount:default:default")
            groups = ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]
        if kind == "custom":
            cn = spec.get("cn", cn)
            orgs = spec.get("orgs", orgs)
            dns, ips = spec.get("dns", dns), spec.get("ips", ips)
            emails, uris = spec.get("emails", []), spec.get("uris", [])
            usages = spec.get("usages", usages)
            signer = spec.get("signerName", signer)
            username = spec.get("requester", username)
            groups = spec.get("groups", groups)
        if kind == "badPEM":
            request = base64.b64encode(spec.get("garbage", "this is not a certificate request").encode()).decode()
        else:
            request = csrgen.csr_request_b64(csrgen.build_csr(key, cn, orgs, dns, ips, emails, uris))
        body = {"metadata": {"name": spec["name"]},
                "spec": {"request": request, "signerName": spec.get("signerName", signer),
                         "usages": spec.get("usages", usages), "username": username, "groups": groups}}
        self.create("certificates.k8s.io/certificatesigningrequests", body)
        bucket = "validCsrs" if kind in ("valid",) else ("otherCsrs" if kind in ("clientKubelet", "custom")
                                                         else "forgedCsrs")
        self.summary[bucket].append(spec["name"])

    # ---------------------------------------------------------------- extension-apiserver-authentication
    def ext_auth(self, state):
        if state == "absent":
            return
        olds = list(getattr(self.pki, "old_ca_cert_pems", []) or [])
        oldf = list(getattr(self.pki, "old_front_proxy_ca_cert_pems", []) or [])
        new_c, new_f = self.pki.ca_cert_pem, front_proxy_ca(self.pki)
        if state == "new":
            client, front = [new_c], [new_f]
        elif state == "old":
            client, front = olds[-1:] or [new_c], oldf[-1:] or [new_f]
        elif state == "old+new":
            client, front = olds[-1:] + [new_c], oldf[-1:] + [new_f]
        else:
            raise ScenarioError("extensionApiserverAuthentication must be new|old|old+new|absent")
        data = {"client-ca-file": "".join(c if c.endswith("\n") else c + "\n" for c in client),
                "requestheader-allowed-names": '["front-proxy-client"]',
                "requestheader-client-ca-file": "".join(c if c.endswith("\n") else c + "\n" for c in front),
                "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
                "requestheader-group-headers": '["X-Remote-Group"]',
                "requestheader-username-headers": '["X-Remote-User"]'}
        self.namespace("kube-system")
        cur = self.store.get("configmaps", "kube-system", "extension-apiserver-authentication")
        if cur is None:
            self.create("configmaps", {"metadata": {"name": "extension-apiserver-authentication",
                                                    "namespace": "kube-system"}, "data": data})
        else:
            def fn(o):
                o["data"] = data
                return True
            self.store.mutate("configmaps", "kube-system", "extension-apiserver-authentication", fn)
