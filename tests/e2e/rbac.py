"""Least privilege, proven on the real server (issue 16 item 7): deploy/'s RBAC against what kubemend's
ServiceAccount actually did, read from the apiserver's audit log.

deploy/'s rules are cut into grants, one per (scope, verb, apiGroup, resource[/subresource], resourceName):
scope is "cluster" for the ClusterRole and the namespace for a Role. Every audited request of the ServiceAccount
is a call. Then:

  - a call the server denied (403) or that no grant of deploy/ covers is reported as `missing rule: ...`: the code
    makes a call deploy/ does not allow (add the rule; a call covered only by the server's default policy, like
    discovery, is listed in DEFAULT_POLICY);
  - a grant no call exercised is reported as `unused rule: ...`: remove it, unless it serves an opt-in feature the
    run does not enable, listed in EXEMPT with its reason;
  - an EXEMPT entry deploy/ no longer grants, or an opt-in one the run did exercise, is reported as
    `stale exemption` (a fallback path, e.g. a re-read after a 409, may or may not happen in a run).

So adding an API call means adding a rule (the test names it), and adding a rule means exercising it or listing
why not. Pure functions of (manifests, audit events): tests/integration/test_rbac_audit.py checks them offline.
"""

import glob
import os
import urllib.parse

import yaml

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(REPO_ROOT, "deploy")
SA = {"kind": "ServiceAccount", "name": "kubemend", "namespace": "kubemend-system"}

# Grants the e2e run does not exercise, with why: opt-in features it does not enable, and the code's fallback
# and conflict paths it does not provoke (each names its caller). (scope, verb, group, resource, name);
# name None = any.
OPT_IN = "opt-in, not enabled by the e2e run: "
FALLBACK = "fallback/conflict path the e2e run does not provoke: "
EXEMPT = {
    ("cluster", "delete", "", "secrets", None): OPT_IN + "tokens.mode: Delete",
    ("cluster", "delete", "", "pods", None): OPT_IN + "pods.deleteOwnerlessPods",
    ("kube-system", "create", "", "secrets", None): OPT_IN + "nodes.createJoinToken (nodes/jointoken.c)",
    ("kubemend-system", "update", "", "configmaps", "kubemend-keys"):
        FALLBACK + "the key snapshot rewritten when the cluster's keys or CAs change (bridge/snapshot.c)",
    ("kubemend-system", "create", "", "serviceaccounts/token", "kubemend"):
        FALLBACK + "the signing key's kid asked only while the server trusts more than one key (bridge/cluster.c)",
    ("cluster", "approve", "certificates.k8s.io", "signers", "kubernetes.io/kube-apiserver-client-kubelet"):
        OPT_IN + "csr.approveKubeletClient",
    ("cluster", "create", "authentication.k8s.io", "tokenreviews", None):
        FALLBACK + "TokenReview when /openid/v1/jwks is not served (tokens/check.c)",
    ("cluster", "get", "", "secrets", None):
        FALLBACK + "a Secret re-read after a 409 on its patch (tokens.c) or healed one by one (heal.c)",
    ("cluster", "get", "", "pods", None): FALLBACK + "a pod re-read after a refused eviction (pods/restart.c)",
    ("cluster", "get", "", "nodes", None): FALLBACK + "a Node missing from the csr step's list (csr/decide.c)",
    ("cluster", "get", "certificates.k8s.io", "certificatesigningrequests", None):
        FALLBACK + "a CSR re-read after a 409 on its approval (csr/decide.c)",
    ("cluster", "get", "apps", "deployments", None): FALLBACK + "a workload re-read after a 409 (pods/restart.c)",
    ("cluster", "get", "apps", "statefulsets", None): FALLBACK + "a workload re-read after a 409 (pods/restart.c)",
    ("cluster", "get", "apps", "daemonsets", None): FALLBACK + "a workload re-read after a 409 (pods/restart.c)",
    ("cluster", "patch", "", "events", None):
        FALLBACK + "an Event repeated within the aggregation window (operator/kube/events.c)",
}

# Grants the server checks inside another request instead of as a request of their own: exercised when that
# request succeeded.  grant -> (verb, group, resource) of the request.
IMPLIED = {
    ("cluster", "approve", "certificates.k8s.io", "signers", "kubernetes.io/kubelet-serving"):
        ("update", "certificates.k8s.io", "certificatesigningrequests/approval"),
}

# Calls allowed to every authenticated user by the server's default policy (system:discovery,
# system:basic-user, system:public-info-viewer): not deploy/'s business.
DEFAULT_POLICY = {"/api", "/apis", "/version", "/healthz", "/livez", "/readyz"}


def load_objects(deploy_dir=DEPLOY):
    """Every object of the YAML files in deploy_dir (not only the kustomization: the RBAC files are all there)."""
    objs = []
    for path in sorted(glob.glob(os.path.join(deploy_dir, "*.yaml"))):
        with open(path) as f:
            objs += [o for o in yaml.safe_load_all(f) if o]
    return objs


def grants(objs, sa=SA):
    """{grant: "Kind name"} for the roles bound to sa. grant = (scope, verb, group, resource, name|None) or
    ("nonResource", verb, "", url, None)."""
    roles = {(o["kind"], (o["metadata"].get("namespace") if o["kind"] == "Role" else None), o["metadata"]["name"]): o
             for o in objs if o.get("kind") in ("ClusterRole", "Role")}
    out = {}
    for b in objs:
        if b.get("kind") not in ("ClusterRoleBinding", "RoleBinding") or sa not in b.get("subjects", []):
            continue
        ref = b["roleRef"]
        scope = "cluster" if b["kind"] == "ClusterRoleBinding" else b["metadata"]["namespace"]
        role = roles.get((ref["kind"], None if ref["kind"] == "ClusterRole" else scope, ref["name"]))
        if role is None:
            continue
        label = "%s %s" % (role["kind"], role["metadata"]["name"])
        for r in role.get("rules", []):
            for verb in r["verbs"]:
                for url in r.get("nonResourceURLs", []):
                    out[("nonResource", verb, "", url, None)] = label
                for group in r.get("apiGroups", []):
                    for res in r.get("resources", []):
                        for name in r.get("resourceNames") or [None]:
                            out[(scope, verb, group, res, name)] = label
    return out


def call_of(ev):
    """(verb, group, resource, namespace, name, code, path) of an audit event; resource None for a non-resource
    URL (path then says which). A list/watch narrowed by fieldSelector metadata.name= is a call on that name, as
    the authorizer sees it."""
    ref = ev.get("objectRef") or {}
    code = (ev.get("responseStatus") or {}).get("code")
    uri = urllib.parse.urlsplit(ev["requestURI"])
    if not ref.get("resource"):
        return (ev["verb"], "", None, None, None, code, uri.path)
    res = ref["resource"] + ("/" + ref["subresource"] if ref.get("subresource") else "")
    name = ref.get("name")
    if not name:
        for sel in urllib.parse.parse_qs(uri.query).get("fieldSelector", []):
            for term in sel.split(","):
                if term.startswith("metadata.name="):
                    name = term[len("metadata.name="):]
    return (ev["verb"], ref.get("apiGroup", ""), res, ref.get("namespace"), name, code, uri.path)


def covers(grant, call):
    scope, verb, group, res, name = grant
    cverb, cgroup, cres, cns, cname = call[:5]
    if scope == "nonResource":
        return cres is None and verb == cverb and res == call[6]
    if cres is None or (verb, group, res) != (cverb, cgroup, cres):
        return False
    if scope != "cluster" and scope != cns:
        return False
    return name is None or name == cname


def fmt_grant(g, label=""):
    scope, verb, group, res, name = g
    where = "cluster-wide" if scope == "cluster" else ("URL" if scope == "nonResource" else "in " + scope)
    return "%s %s%s%s %s%s" % (verb, group + "/" if group else "", res, "/" + name if name else "", where,
                                " (" + label + ")" if label else "")


def fmt_call(c):
    verb, group, res, ns, name, code, path = c
    if res is None:
        return "%s %s -> %s" % (verb, path, code)
    return "%s %s%s%s%s -> %s" % (verb, group + "/" if group else "", res, " in " + ns if ns else "",
                                  " name=" + name if name else "", code)


def check(objs, events, exempt=EXEMPT, implied=IMPLIED, default_policy=DEFAULT_POLICY, sa=SA):
    """The findings (sorted strings; [] = least privilege proven) for these manifests and audit events."""
    g = grants(objs, sa)
    calls = sorted({call_of(e) for e in events}, key=lambda c: tuple(str(x) for x in c))
    findings = set()
    used = set()
    for c in calls:
        if c[5] in (401, 403):
            findings.add("missing rule: %s (denied by the server)" % fmt_call(c))
            continue
        hit = [x for x in g if covers(x, c)]
        used.update(hit)
        if not hit and not (c[2] is None and c[6] in default_policy):
            findings.add("missing rule: %s (allowed, but not by deploy/)" % fmt_call(c))
    for grant, (verb, group, res) in implied.items():
        if grant in g and any(c[:3] == (verb, group, res) and c[5] is not None and 200 <= c[5] < 300
                              for c in calls):
            used.add(grant)
    for grant, label in g.items():
        if grant not in used and grant not in exempt:
            findings.add("unused rule: %s - remove it, or list it in tests/e2e/rbac.py EXEMPT with the reason"
                         % fmt_grant(grant, label))
    for grant, why in exempt.items():
        if grant not in g:
            findings.add("stale exemption: %s (%s) is not granted by deploy/" % (fmt_grant(grant), why))
        elif grant in used and why.startswith(OPT_IN):  # a fallback may happen in a run (a 409), an opt-in not
            findings.add("stale exemption: %s (%s) was exercised" % (fmt_grant(grant), why))
    return sorted(findings)
