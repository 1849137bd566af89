"""Authorization: system:masters, a simplified Node authorizer, and RBAC over the objects in the store."""

from . import errors

RBAC = "rbac.authorization.k8s.io"


class Attrs:
    """Request attributes (authorizer.Attributes)."""

    def __init__(self, verb, resource_request=True, group="", version="", resource="", subresource="", name="",
                 namespace="", path=""):
        self.verb = verb
        self.resource_request = resource_request
        self.group = group
        self.version = version
        self.resource = resource
        self.subresource = subresource
        self.name = name
        self.namespace = namespace
        self.path = path


def _subject_matches(subj, user):
    kind = subj.get("kind")
    name = subj.get("name")
    if kind == "User":
        return name == user.name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        return user.name == "system:serviceaccount:%s:%s" % (subj.get("namespace", ""), name)
    return False


def _rule_allows(rule, a):
    verbs = rule.get("verbs") or []
    if "*" not in verbs and a.verb not in verbs:
        return False
    if not a.resource_request:
        for u in rule.get("nonResourceURLs") or []:
            if u == "*" or u == a.path or (u.endswith("*") and a.path.startswith(u[:-1])):
                return True
        return False
    if rule.get("nonResourceURLs") and not rule.get("resources"):
        return False
    groups = rule.get("apiGroups") or []
    if "*" not in groups and a.group not in groups:
        return False
    combined = a.resource + ("/" + a.subresource if a.subresource else "")
    ok = False
    for r in rule.get("resources") or []:
        if r == "*" or r == combined:
            ok = True
            break
        if a.subresource and r == "*/" + a.subresource:
            ok = True
            break
    if not ok:
        return False
    names = rule.get("resourceNames") or []
    if names and a.name not in names:
        return False
    return True


def _role_rules(store, ref, namespace):
    kind = ref.get("kind")
    name = ref.get("name", "")
    if kind == "ClusterRole":
        role = store.get_ref(RBAC + "/clusterroles", "", name)
    elif kind == "Role":
        role = store.get_ref(RBAC + "/roles", namespace, name)
    else:
        role = None
    if role is None:
        return []
    rules = list(role.get("rules") or [])
    agg = role.get("aggregationRule")
    if kind == "ClusterRole" and agg:
        from .selectors import selector_from_match_labels
        preds = [selector_from_match_labels(s) for s in agg.get("clusterRoleSelectors") or []]
        for cr in store.list_refs(RBAC + "/clusterroles"):
            if cr["metadata"]["name"] != name and any(p((cr["metadata"].get("labels") or {})) for p in preds):
                rules.extend(cr.get("rules") or [])
    return rules


_NODE_RULES = [
    {"apiGroups": [""], "resources": ["nodes", "nodes/status"], "verbs": ["create", "get", "list", "watch", "update",
                                                                        "patch", "delete"]},
    {"apiGroups": [""], "resources": ["pods", "services", "endpoints", "secrets", "configmaps",
                                      "persistentvolumeclaims", "persistentvolumes"], "verbs": ["get", "list",
                                                                                              "watch"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete"]},
    {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["update", "patch"]},
    {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "update", "patch"]},
    {"apiGroups": ["certificates.k8s.io"], "resources": ["certificatesigningrequests"],
     "verbs": ["create", "get", "list", "watch"]},
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update", "patch",
                                                                            "delete"]},
    {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
    {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
    {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews", "localsubjectaccessreviews"],
     "verbs": ["create"]},
]


def authorize(store, user, a):
    """True if `user` may perform `a`."""
    if "system:masters" in user.groups:
        return True
    if "system:nodes" in user.groups and user.name.startswith("system:node:"):
        # simplified Node authorizer (the real one restricts to objects related to the node)
        if any(_rule_allows(r, a) for r in _NODE_RULES):
            return True
    for crb in store.list_refs(RBAC + "/clusterrolebindings"):
        if any(_subject_matches(s, user) for s in crb.get("subjects") or []):
            if any(_rule_allows(r, a) for r in _role_rules(store, crb.get("roleRef") or {}, "")):
                return True
    if a.namespace and a.resource_request:
        for rb in store.list_refs(RBAC + "/rolebindings", a.namespace):
            if any(_subject_matches(s, user) for s in rb.get("subjects") or []):
                if any(_rule_allows(r, a) for r in _role_rules(store, rb.get("roleRef") or {}, a.namespace)):
                    return True
    return False


def rules_for(store, user, namespace):
    """(resourceRules, nonResourceRules) for SelfSubjectRulesReview."""
    res, nonres = [], []
    if "system:masters" in user.groups:
        return ([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                [{"verbs": ["*"], "nonResourceURLs": ["*"]}])
    bindings = [(b, "") for b in store.list_refs(RBAC + "/clusterrolebindings")]
    if namespace:
        bindings += [(b, namespace) for b in store.list_refs(RBAC + "/rolebindings", namespace)]
    for b, ns in bindings:
        if any(_subject_matches(s, user) for s in b.get("subjects") or []):
            for r in _role_rules(store, b.get("roleRef") or {}, ns):
                if r.get("nonResourceURLs"):
                    nonres.append({"verbs": r.get("verbs", []), "nonResourceURLs": r["nonResourceURLs"]})
                else:
                    rr = {"verbs": r.get("verbs", []), "apiGroups": r.get("apiGroups", []),
                          "resources": r.get("resources", [])}
                    if r.get("resourceNames"):
                        rr["resourceNames"] = r["resourceNames"]
                    res.append(rr)
    return res, nonres


def forbidden_error(user, a, reason=""):
    """403 exactly as responsewriters.Forbidden + apierrors.NewForbidden."""
    if not a.resource_request:
        msg = 'User "%s" cannot %s path "%s"' % (user.name, a.verb, a.path)
        err = errors.forbidden(None, "", msg + (": " + reason if reason else ""))
        err.details = {}
        err.pretty = True  # the real server indents this one regardless of the UA (fixture oidc-jwks-anonymous)
        return err
    resource = a.resource + ("/" + a.subresource if a.subresource else "")
    if a.namespace:
        msg = 'User "%s" cannot %s resource "%s" in API group "%s" in the namespace "%s"' % (
            user.name, a.verb, resource, a.group, a.namespace)
    else:
        msg = 'User "%s" cannot %s resource "%s" in API group "%s" at the cluster scope' % (
            user.name, a.verb, resource, a.group)
    return errors.forbidden((a.group, a.resource), a.name, msg + (": " + reason if reason else ""))


def _cr(name, rules, labels=True):
    md = {"name": name, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}
    if labels:
        md["labels"] = {"kubernetes.io/bootstrapping": "rbac-defaults"}
    return {"apiVersion": RBAC + "/v1", "kind": "ClusterRole", "metadata": md, "rules": rules}


def _crb(name, role, subjects):
    return {"apiVersion": RBAC + "/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": name, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
                         "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role},
            "subjects": [dict(s, apiGroup=RBAC) if s["kind"] != "ServiceAccount" else s for s in subjects]}


def bootstrap_objects():
    """[(resource_key, obj)] of the default RBAC policy a fresh cluster has (subset)."""
    read = ["get", "list", "watch"]
    write = ["create", "delete", "deletecollection", "patch", "update"]
    roles = [
        _cr("cluster-admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                              {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        _cr("system:discovery", [{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                                      "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
                                  "verbs": ["get"]}]),
        _cr("system:basic-user", [{"apiGroups": ["authorization.k8s.io"],
                                   "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                                   "verbs": ["create"]}]),
        _cr("system:public-info-viewer", [{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version",
                                                               "/version/"], "verbs": ["get"]}]),
        _cr("system:service-account-issuer-discovery", [{"nonResourceURLs": ["/.well-known/openid-configuration",
                                                                             "/openid/v1/jwks"], "verbs": ["get"]}]),
        _cr("view", [{"apiGroups": ["", "apps", "batch", "policy", "coordination.k8s.io", "events.k8s.io"],
                      "resources": ["pods", "configmaps", "services", "endpoints", "serviceaccounts", "events",
                                    "deployments", "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs",
                                    "poddisruptionbudgets", "leases", "pods/log", "pods/status"], "verbs": read}]),
        _cr("edit", [{"apiGroups": ["", "apps", "batch", "policy"],
                      "resources": ["pods", "configmaps", "secrets", "services", "serviceaccounts", "deployments",
                                    "replicasets", "statefulsets", "daemonsets", "jobs", "cronjobs",
                                    "poddisruptionbudgets", "pods/eviction"], "verbs": read + write}]),
        _cr("admin", [{"apiGroups": ["", "apps", "batch", "policy", "rbac.authorization.k8s.io"],
                       "resources": ["*"], "verbs": read + write}]),
    ]
    bindings = [
        _crb("cluster-admin", "cluster-admin", [{"kind": "Group", "name": "system:masters"}]),
        _crb("system:discovery", "system:discovery", [{"kind": "Group", "name": "system:authenticated"}]),
        _crb("system:basic-user", "system:basic-user", [{"kind": "Group", "name": "system:authenticated"}]),
        _crb("system:public-info-viewer", "system:public-info-viewer",
             [{"kind": "Group", "name": "system:authenticated"}, {"kind": "Group", "name": "system:unauthenticated"}]),
        _crb("system:service-account-issuer-discovery", "system:service-account-issuer-discovery",
             [{"kind": "Group", "name": "system:serviceaccounts"}]),
    ]
    return [(RBAC + "/clusterroles", r) for r in roles] + [(RBAC + "/clusterrolebindings", b) for b in bindings]
