"""Resource registry: built-in kinds the simulator serves plus CRD-defined ones.

Resource keys: "<group>/<plural>", core group -> "<plural>" (e.g. "pods", "apps/deployments")."""

import threading

STD_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SUB_VERBS = ["get", "patch", "update"]


def _get_path(obj, path):
    cur = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def _fs_str(path, default=""):
    def get(obj):
        v = _get_path(obj, path)
        if v is None:
            return default
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)
    return get


class ResourceInfo:
    def __init__(self, group, version, kind, plural, singular="", namespaced=True, short_names=None, verbs=None,
                 subresources=None, list_kind=None, printer_columns=None, field_selectors=None, categories=None,
                 versions=None, has_generation=False, status_subresource=None, is_crd=False, crd_name=None,
                 schema=None, schemas=None):
        self.group = group
        self.version = version          # storage / canonical version
        self.versions = list(versions or [version])  # every served version, preferred first
        self.kind = kind
        self.plural = plural
        self.singular = singular
        self.namespaced = namespaced
        self.short_names = list(short_names or [])
        self.verbs = list(verbs if verbs is not None else STD_VERBS)
        # subresources: name -> {"kind":..., "verbs":[...], "group":..., "version":...}
        self.subresources = dict(subresources or {})
        self.list_kind = list_kind or kind + "List"
        self.printer_columns = printer_columns  # CRD additionalPrinterColumns (list of dicts) or None
        fs = {"metadata.name": _fs_str("metadata.name")}
        if namespaced:
            fs["metadata.namespace"] = _fs_str("metadata.namespace")
        fs.update(field_selectors or {})
        self.field_selectors = fs       # field label -> getter(obj) -> str
        self.categories = list(categories or [])
        self.has_generation = has_generation
        if status_subresource is None:
            status_subresource = "status" in self.subresources
        self.status_subresource = status_subresource
        self.is_crd = is_crd
        self.crd_name = crd_name
        self.schemas = schemas or {}  # version -> openAPIV3Schema (CRDs)

    @property
    def key(self):
        return (self.group + "/" + self.plural) if self.group else self.plural

    def api_version(self, version=None):
        v = version or self.version
        return (self.group + "/" + v) if self.group else v

    def __repr__(self):
        return "<ResourceInfo %s>" % self.key


def _status(kind):
    return {"status": {"kind": kind, "verbs": list(SUB_VERBS)}}


def _builtin():
    R = ResourceInfo
    res = []
    pods_sub = _status("Pod")
    pods_sub.update({
        "eviction": {"kind": "Eviction", "verbs": ["create"], "group": "policy", "version": "v1"},
        "log": {"kind": "Pod", "verbs": ["get"]},
        "binding": {"kind": "Binding", "verbs": ["create"]},
    })
    res.append(R("", "v1", "Pod", "pods", namespaced=True, short_names=["po"], categories=["all"],
                 subresources=pods_sub, field_selectors={
                     "spec.nodeName": _fs_str("spec.nodeName"),
                     "spec.restartPolicy": _fs_str("spec.restartPolicy"),
                     "spec.schedulerName": _fs_str("spec.schedulerName"),
                     "spec.serviceAccountName": _fs_str("spec.serviceAccountName"),
                     "status.phase": _fs_str("status.phase"),
                     "status.podIP": _fs_str("status.podIP"),
                     "status.nominatedNodeName": _fs_str("status.nominatedNodeName"),
                 }))
    res.append(R("", "v1", "Secret", "secrets", field_selectors={"type": _fs_str("type")}))
    res.append(R("", "v1", "ServiceAccount", "serviceaccounts", short_names=["sa"], subresources={
        "token": {"kind": "TokenRequest", "verbs": ["create"], "group": "authentication.k8s.io", "version": "v1"}}))
    res.append(R("", "v1", "ConfigMap", "configmaps", short_names=["cm"]))
    res.append(R("", "v1", "Node", "nodes", namespaced=False, short_names=["no"], subresources=_status("Node"),
                 field_selectors={"spec.unschedulable": _fs_str("spec.unschedulable", "false")}))
    ns_sub = _status("Namespace")
    ns_sub["finalize"] = {"kind": "Namespace", "verbs": ["update"]}
    res.append(R("", "v1", "Namespace", "namespaces", namespaced=False, short_names=["ns"],
                 verbs=["create", "delete", "get", "list", "patch", "update", "watch"], subresources=ns_sub,
                 field_selectors={"status.phase": _fs_str("status.phase")}))
    ev_fs = {}
    for f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"):
        ev_fs["involvedObject." + f] = _fs_str("involvedObject." + f)
    ev_fs["reason"] = _fs_str("reason")
    ev_fs["reportingComponent"] = _fs_str("reportingComponent")
    ev_fs["source"] = lambda o: (o.get("source") or {}).get("component") or o.get("reportingComponent") or ""
    ev_fs["type"] = _fs_str("type")
    res.append(R("", "v1", "Event", "events", short_names=["ev"], field_selectors=ev_fs))
    # events.k8s.io: the same stored objects (core shape, see events.py), its own field labels
    from .events import V1_FIELD_LABELS
    ev2_fs = {label: (ev_fs[core] if core in ev_fs else _fs_str(core)) for label, core in V1_FIELD_LABELS.items()}
    res.append(R("events.k8s.io", "v1", "Event", "events", short_names=["ev"], field_selectors=ev2_fs,
                 versions=["v1", "v1beta1"]))
    res.append(R("", "v1", "Service", "services", short_names=["svc"], categories=["all"],
                 verbs=["create", "delete", "get", "list", "patch", "update", "watch"], subresources=_status("Service")))
    res.append(R("", "v1", "Endpoints", "endpoints", short_names=["ep"]))
    res.append(R("", "v1", "LimitRange", "limitranges", short_names=["limits"]))
    res.append(R("", "v1", "ResourceQuota", "resourcequotas", short_names=["quota"], subresources=_status("ResourceQuota")))
    res.append(R("", "v1", "PodTemplate", "podtemplates"))
    res.append(R("", "v1", "ReplicationController", "replicationcontrollers", short_names=["rc"], categories=["all"],
                 subresources=_status("ReplicationController"), has_generation=True))
    for kind, plural, short in (("Deployment", "deployments", "deploy"), ("ReplicaSet", "replicasets", "rs"),
                                ("StatefulSet", "statefulsets", "sts"), ("DaemonSet", "daemonsets", "ds")):
        sub = _status(kind)
        if plural != "daemonsets":
            sub["scale"] = {"kind": "Scale", "verbs": list(SUB_VERBS), "group": "autoscaling", "version": "v1"}
        fs = {"status.replicas": _fs_str("status.replicas", "0")} if plural == "replicasets" else {}
        res.append(R("apps", "v1", kind, plural, short_names=[short], categories=["all"], subresources=sub,
                     has_generation=True, field_selectors=fs))
    res.append(R("apps", "v1", "ControllerRevision", "controllerrevisions"))
    res.append(R("batch", "v1", "Job", "jobs", categories=["all"], subresources=_status("Job"), has_generation=True,
                 field_selectors={"status.successful": _fs_str("status.succeeded", "0")}))
    res.append(R("batch", "v1", "CronJob", "cronjobs", short_names=["cj"], categories=["all"],
                 subresources=_status("CronJob"), has_generation=True, versions=["v1", "v1beta1"]))
    res.append(R("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", short_names=["pdb"],
                 subresources=_status("PodDisruptionBudget"), has_generation=True, versions=["v1", "v1beta1"]))
    csr_sub = _status("CertificateSigningRequest")
    csr_sub["approval"] = {"kind": "CertificateSigningRequest", "verbs": list(SUB_VERBS)}
    res.append(R("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests",
                 namespaced=False, short_names=["csr"], subresources=csr_sub,
                 field_selectors={"spec.signerName": _fs_str("spec.signerName")}))
    res.append(R("coordination.k8s.io", "v1", "Lease", "leases"))
    res.append(R("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions",
                 namespaced=False, short_names=["crd", "crds"], subresources=_status("CustomResourceDefinition"),
                 has_generation=True))
    for kind, plural, ns in (("Role", "roles", True), ("ClusterRole", "clusterroles", False),
                             ("RoleBinding", "rolebindings", True), ("ClusterRoleBinding", "clusterrolebindings", False)):
        res.append(R("rbac.authorization.k8s.io", "v1", kind, plural, namespaced=ns))
    # create-only virtual resources
    res.append(R("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", namespaced=False, verbs=["create"]))
    for kind, plural, ns in (("SelfSubjectAccessReview", "selfsubjectaccessreviews", False),
                             ("SubjectAccessReview", "subjectaccessreviews", False),
                             ("LocalSubjectAccessReview", "localsubjectaccessreviews", True),
                             ("SelfSubjectRulesReview", "selfsubjectrulesreviews", False)):
        res.append(R("authorization.k8s.io", "v1", kind, plural, namespaced=ns, verbs=["create"]))
    return res


VIRTUAL = {"authentication.k8s.io/tokenreviews", "authorization.k8s.io/selfsubjectaccessreviews",
           "authorization.k8s.io/subjectaccessreviews", "authorization.k8s.io/localsubjectaccessreviews",
           "authorization.k8s.io/selfsubjectrulesreviews"}


# Versions a profile serves where they differ from ResourceInfo.versions (kube-apiserver 1.26 vs 1.19):
# 1.25 removed policy/v1beta1 and batch/v1beta1 CronJob, 1.25 events.k8s.io/v1beta1; 1.19 has no policy/v1
# (added in 1.21) and no batch/v1 CronJob (1.21).
PROFILE_VERSIONS = {
    "modern": {"policy/poddisruptionbudgets": ["v1"], "events.k8s.io/events": ["v1"], "batch/cronjobs": ["v1"]},
    "legacy": {"policy/poddisruptionbudgets": ["v1beta1"], "events.k8s.io/events": ["v1", "v1beta1"],
               "batch/cronjobs": ["v1beta1"]},
}


class Registry:
    """Thread-safe registry of served resources (built-ins + CRDs).  `profile` ("modern" ~ 1.26, "legacy" ~
    1.19) selects which versions of the built-in kinds are served (PROFILE_VERSIONS)."""

    def __init__(self, profile="modern"):
        self._lock = threading.RLock()
        self._by_key = {}
        self._order = []
        self.profile = profile
        for info in _builtin():
            self.add(info)

    def served_versions(self, info):
        """The versions of info served under the current profile, preferred first."""
        return PROFILE_VERSIONS.get(self.profile, {}).get(info.key, info.versions)

    def eviction_version(self):
        """The policy version of the pods/eviction subresource (discovery, accepted bodies)."""
        return "v1beta1" if self.profile == "legacy" else "v1"

    def add(self, info):
        with self._lock:
            if info.key not in self._by_key:
                self._order.append(info.key)
            self._by_key[info.key] = info

    def remove(self, key):
        with self._lock:
            self._by_key.pop(key, None)
            if key in self._order:
                self._order.remove(key)

    def by_key(self, key):
        with self._lock:
            return self._by_key.get(key)

    def all(self):
        with self._lock:
            return [self._by_key[k] for k in self._order]

    def lookup(self, group, version, plural):
        with self._lock:
            info = self._by_key.get((group + "/" + plural) if group else plural)
        if info is None or version not in self.served_versions(info):
            return None
        return info

    def groups(self):
        """[(group, [versions...])] in registration order; core group excluded."""
        out = {}
        for info in self.all():
            if not info.group:
                continue
            vs = out.setdefault(info.group, [])
            for v in self.served_versions(info):
                if v not in vs:
                    vs.append(v)
        return list(out.items())

    def resources_for(self, group, version):
        return [i for i in self.all() if i.group == group and version in self.served_versions(i)]

    def by_kind(self, group, kind):
        for info in self.all():
            if info.group == group and info.kind == kind:
                return info
        return None


def _container_defaults(c):
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("imagePullPolicy", "Always" if str(c.get("image", "")).endswith(":latest") or
                 ":" not in str(c.get("image", "")) else "IfNotPresent")
    c.setdefault("resources", {})
    for port in c.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")


def _pod_spec_defaults(spec):
    for c in spec.get("containers") or []:
        _container_defaults(c)
    for c in spec.get("initContainers") or []:
        _container_defaults(c)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")


# status fields without omitempty (always printed, 0 when unset), per resource; modern = 1.26 adds some
ZERO_STATUS = {"apps/replicasets": ("replicas",), "apps/statefulsets": ("replicas",),
               "apps/daemonsets": ("currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled",
                                   "numberReady")}
ZERO_STATUS_MODERN = {"apps/statefulsets": ("availableReplicas",)}
DS_TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"


def apply_defaults(res, obj, profile="modern"):
    """Server-side defaulting (a subset of the real defaults) applied on create."""
    if res == "namespaces":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
    elif res == "pods":
        spec = obj.setdefault("spec", {})
        _pod_spec_defaults(spec)
        sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = sa
        spec["serviceAccount"] = sa
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")  # Priority admission
        st = obj.setdefault("status", {})
        st.setdefault("phase", "Pending")
        st.setdefault("qosClass", "BestEffort")
    elif res == "secrets":
        obj.setdefault("type", "Opaque")
        sd = obj.pop("stringData", None)
        if sd:
            import base64
            data = obj.setdefault("data", {})
            for k, v in sd.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
    elif res in ("apps/deployments", "apps/replicasets", "apps/statefulsets", "apps/daemonsets", "batch/jobs"):
        spec = obj.setdefault("spec", {})
        if res != "apps/daemonsets" and res != "batch/jobs":
            spec.setdefault("replicas", 1)
        tmpl = spec.setdefault("template", {})
        tspec = tmpl.setdefault("spec", {})
        _pod_spec_defaults(tspec)
        if tspec.get("serviceAccountName") or tspec.get("serviceAccount"):
            # v1 conversion prints the deprecated serviceAccount next to serviceAccountName
            tspec["serviceAccountName"] = tspec.get("serviceAccountName") or tspec["serviceAccount"]
            tspec["serviceAccount"] = tspec["serviceAccountName"]
        tmpl.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        if res == "apps/deployments":
            spec.setdefault("strategy", {"type": "RollingUpdate",
                                         "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
        elif res == "apps/statefulsets":
            spec.setdefault("podManagementPolicy", "OrderedReady")
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
            spec.setdefault("revisionHistoryLimit", 10)
        elif res == "apps/daemonsets":
            spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}})
            ru = spec["updateStrategy"].get("rollingUpdate")
            if profile != "legacy" and spec["updateStrategy"].get("type") == "RollingUpdate" and \
                    isinstance(ru, dict):
                ru.setdefault("maxSurge", 0)  # 1.22+
            spec.setdefault("revisionHistoryLimit", 10)
            md = obj.setdefault("metadata", {})
            md["annotations"] = dict(md.get("annotations") or {}, **{DS_TEMPLATE_GENERATION: "1"})
        obj.setdefault("status", {})
    elif res in ("policy/poddisruptionbudgets",):
        obj.setdefault("status", {"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0,
                                  "expectedPods": 0})
    elif res == "certificates.k8s.io/certificatesigningrequests":
        obj.setdefault("status", {})
        obj.get("spec", {}).pop("expirationSeconds", None) if False else None
    elif res == "nodes":
        obj.setdefault("spec", {})
        obj.setdefault("status", {}).setdefault("daemonEndpoints", {"kubeletEndpoint": {"Port": 0}})


# ----------------------------------------------------------------------------------------------------------------
# Protobuf request bodies.  kubectl's typed clients (create configmap/secret/namespace/serviceaccount, create token,
# certificate approve/deny, drain's evictions) send `application/vnd.kubernetes.protobuf`.  The real server decodes
# any built-in type; we decode the handful of message types those commands send (field numbers from the
# k8s.io/api generated.proto files) into the equivalent JSON dict.  Responses are always JSON (clients accept it).

def _pb_varint(buf, pos):
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _pb_fields(buf):
    pos, out = 0, []
    while pos < len(buf):
        key, pos = _pb_varint(buf, pos)
        fno, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = _pb_varint(buf, pos)
        elif wt == 2:
            n, pos = _pb_varint(buf, pos)
            val = bytes(buf[pos:pos + n])
            pos += n
        elif wt == 1:
            val = bytes(buf[pos:pos + 8])
            pos += 8
        elif wt == 5:
            val = bytes(buf[pos:pos + 4])
            pos += 4
        else:
            raise ValueError("unsupported protobuf wire type %d" % wt)
        out.append((fno, wt, val))
    return out


_S, _B, _I, _BOOL, _T, _MSS, _MSB, _RS = "s", "b", "i", "bool", "t", "mss", "msb", "rs"
_OWNER = {1: ("kind", _S), 3: ("name", _S), 4: ("uid", _S), 5: ("apiVersion", _S), 6: ("controller", _BOOL),
          7: ("blockOwnerDeletion", _BOOL)}
_OBJMETA = {1: ("name", _S), 2: ("generateName", _S), 3: ("namespace", _S), 5: ("uid", _S),
            6: ("resourceVersion", _S), 7: ("generation", "iz"), 8: ("creationTimestamp", _T),
            9: ("deletionTimestamp", _T), 10: ("deletionGracePeriodSeconds", _I), 11: ("labels", _MSS),
            12: ("annotations", _MSS), 13: ("ownerReferences", ("rep", _OWNER)), 14: ("finalizers", _RS)}
_OBJREF = {1: ("kind", _S), 2: ("namespace", _S), 3: ("name", _S), 4: ("uid", _S), 5: ("apiVersion", _S),
           6: ("resourceVersion", _S), 7: ("fieldPath", _S)}
_DELOPTS = {1: ("gracePeriodSeconds", _I), 2: ("preconditions", {1: ("uid", _S), 2: ("resourceVersion", _S)}),
            3: ("orphanDependents", _BOOL), 4: ("propagationPolicy", _S), 5: ("dryRun", _RS)}
_CSR_COND = {1: ("type", _S), 2: ("reason", _S), 3: ("message", _S), 4: ("lastUpdateTime", _T),
             5: ("lastTransitionTime", _T), 6: ("status", _S)}
_RATTRS = {1: ("namespace", _S), 2: ("verb", _S), 3: ("group", _S), 4: ("version", _S), 5: ("resource", _S),
           6: ("subresource", _S), 7: ("name", _S)}
_NRATTRS = {1: ("path", _S), 2: ("verb", _S)}
_LABELSEL = {1: ("matchLabels", _MSS), 2: ("matchExpressions", ("rep", {1: ("key", _S), 2: ("operator", _S),
                                                                        3: ("values", _RS)}))}
_CONTAINER = {1: ("name", _S), 2: ("image", _S), 3: ("command", _RS), 4: ("args", _RS), 5: ("workingDir", _S),
              6: ("ports", ("rep", {1: ("name", _S), 2: ("hostPort", "iz"), 3: ("containerPort", _I),
                                    4: ("protocol", _S), 5: ("hostIP", _S)})),
              7: ("env", ("rep", {1: ("name", _S), 2: ("value", _S)})),
              9: ("volumeMounts", ("rep", {1: ("name", _S), 2: ("readOnly", _BOOL), 3: ("mountPath", _S),
                                           4: ("subPath", _S)})),
              13: ("terminationMessagePath", _S), 14: ("imagePullPolicy", _S), 20: ("terminationMessagePolicy", _S)}
_PODSPEC = {2: ("containers", ("rep", _CONTAINER)), 20: ("initContainers", ("rep", _CONTAINER)),
            3: ("restartPolicy", _S), 4: ("terminationGracePeriodSeconds", _I), 6: ("dnsPolicy", _S),
            7: ("nodeSelector", _MSS), 8: ("serviceAccountName", _S), 9: ("serviceAccount", _S), 10: ("nodeName", _S),
            21: ("automountServiceAccountToken", _BOOL), 19: ("schedulerName", _S)}
_TEMPLATE = {1: ("metadata", _OBJMETA), 2: ("spec", _PODSPEC)}
PB_SCHEMAS = {
    "ConfigMap": {1: ("metadata", _OBJMETA), 2: ("data", _MSS), 3: ("binaryData", _MSB), 4: ("immutable", _BOOL)},
    "Secret": {1: ("metadata", _OBJMETA), 2: ("data", _MSB), 3: ("type", _S), 4: ("stringData", _MSS),
               5: ("immutable", _BOOL)},
    "Namespace": {1: ("metadata", _OBJMETA), 2: ("spec", {1: ("finalizers", _RS)}), 3: ("status", {1: ("phase", _S)})},
    "ServiceAccount": {1: ("metadata", _OBJMETA), 2: ("secrets", ("rep", _OBJREF)),
                       3: ("imagePullSecrets", ("rep", {1: ("name", _S)})),
                       4: ("automountServiceAccountToken", _BOOL)},
    "CertificateSigningRequest": {
        1: ("metadata", _OBJMETA),
        2: ("spec", {1: ("request", _B), 2: ("username", _S), 3: ("uid", _S), 4: ("groups", _RS), 5: ("usages", _RS),
                     7: ("signerName", _S), 8: ("expirationSeconds", _I)}),
        3: ("status", {1: ("conditions", ("rep", _CSR_COND)), 2: ("certificate", _B)})},
    "Eviction": {1: ("metadata", _OBJMETA), 2: ("deleteOptions", _DELOPTS)},
    # partial: fields `kubectl create deployment|job` send (unknown fields are dropped)
    "Deployment": {1: ("metadata", _OBJMETA), 2: ("spec", {1: ("replicas", _I), 2: ("selector", _LABELSEL),
                                                           3: ("template", _TEMPLATE), 5: ("minReadySeconds", "iz"),
                                                           6: ("revisionHistoryLimit", _I), 7: ("paused", _BOOL),
                                                           9: ("progressDeadlineSeconds", _I)})},
    "Job": {1: ("metadata", _OBJMETA), 2: ("spec", {1: ("parallelism", _I), 2: ("completions", _I),
                                                    3: ("activeDeadlineSeconds", _I), 4: ("selector", _LABELSEL),
                                                    6: ("template", _TEMPLATE), 7: ("backoffLimit", _I)})},
    "DeleteOptions": _DELOPTS,
    "SelfSubjectAccessReview": {1: ("metadata", _OBJMETA), 2: ("spec", {1: ("resourceAttributes", _RATTRS),
                                                                      2: ("nonResourceAttributes", _NRATTRS)})},
    "SubjectAccessReview": {1: ("metadata", _OBJMETA), 2: ("spec", {1: ("resourceAttributes", _RATTRS),
                                                                  2: ("nonResourceAttributes", _NRATTRS),
                                                                  3: ("user", _S), 4: ("groups", _RS), 6: ("uid", _S)})},
    "LocalSubjectAccessReview": {1: ("metadata", _OBJMETA), 2: ("spec", {1: ("resourceAttributes", _RATTRS),
                                                                       2: ("nonResourceAttributes", _NRATTRS),
                                                                       3: ("user", _S), 4: ("groups", _RS),
                                                                       6: ("uid", _S)})},
    "SelfSubjectRulesReview": {1: ("metadata", _OBJMETA), 2: ("spec", {1: ("namespace", _S)})},
    "TokenReview": {1: ("metadata", _OBJMETA), 2: ("spec", {1: ("token", _S), 2: ("audiences", _RS)})},
    "TokenRequest": {1: ("metadata", _OBJMETA),
                     2: ("spec", {1: ("audiences", _RS), 4: ("expirationSeconds", _I),
                                  3: ("boundObjectRef", {1: ("kind", _S), 2: ("apiVersion", _S), 3: ("name", _S),
                                                         4: ("uid", _S)})})},
}


def _pb_decode(buf, schema):
    import base64
    import datetime
    out = {}
    for fno, wt, val in _pb_fields(buf):
        spec = schema.get(fno)
        if spec is None:
            continue
        name, typ = spec
        if typ == _S:
            v = val.decode("utf-8")
            if v:
                out[name] = v
        elif typ == _B:
            out[name] = base64.b64encode(val).decode()
        elif typ in (_I, "iz"):
            v = val - (1 << 64) if val >= (1 << 63) else val
            if typ == _I or v:
                out[name] = v
        elif typ == _BOOL:
            out[name] = bool(val)
        elif typ == _T:
            secs = 0
            for f2, _w, v2 in _pb_fields(val):
                if f2 == 1:
                    secs = v2
            if secs:
                out[name] = datetime.datetime.fromtimestamp(secs, datetime.timezone.utc).strftime(
                    "%Y-%m-%dT%H:%M:%SZ")
        elif typ in (_MSS, _MSB):
            k, v = "", b""
            for f2, _w, v2 in _pb_fields(val):
                if f2 == 1:
                    k = v2.decode()
                elif f2 == 2:
                    v = v2
            out.setdefault(name, {})[k] = v.decode("utf-8") if typ == _MSS else base64.b64encode(v).decode()
        elif typ == _RS:
            out.setdefault(name, []).append(val.decode("utf-8"))
        elif isinstance(typ, tuple) and typ[0] == "rep":
            out.setdefault(name, []).append(_pb_decode(val, typ[1]))
        elif isinstance(typ, dict):
            out[name] = _pb_decode(val, typ)
    return out


def decode_protobuf(body):
    """`k8s\\x00` + runtime.Unknown -> JSON-like dict.  Raises ValueError for unsupported kinds / bad data."""
    if not body.startswith(b"k8s\x00"):
        raise ValueError("missing protobuf magic")
    api_version, kind, raw = "", "", b""
    for fno, _wt, val in _pb_fields(body[4:]):
        if fno == 1:
            for f2, _w, v2 in _pb_fields(val):
                if f2 == 1:
                    api_version = v2.decode()
                elif f2 == 2:
                    kind = v2.decode()
        elif fno == 2:
            raw = val
    schema = PB_SCHEMAS.get(kind)
    if schema is None:
        raise ValueError("protobuf decoding of kind %r is not supported by the simulator" % kind)
    obj = _pb_decode(raw, schema)
    out = {"kind": kind, "apiVersion": api_version}
    out.update(obj)
    return out
