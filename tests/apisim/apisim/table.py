"""meta.k8s.io Table rendering for built-ins (kubectl-like columns) and CRD additionalPrinterColumns."""

import time

from .store import parse_rfc3339

NAME_DESC = ("Name must be unique within a namespace. Is required when creating resources, although some resources "
             "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
             "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
             "http://kubernetes.io/docs/user-guide/identifiers#names")
AGE_DESC = ("CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
            "guaranteed to be set in happens-before order across separate operations. Clients may not set this value. "
            "It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. "
            "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata")


def human_duration(seconds):
    """duration.HumanDuration as kubectl/apiserver print it."""
    s = int(seconds)
    if s < 0:
        s = 0
    if s < 60 * 2:
        return "%ds" % s
    m = s // 60
    if m < 10:
        return "%dm%ds" % (m, s % 60) if s % 60 else "%dm" % m
    if m < 60 * 3:
        return "%dm" % m
    h = m // 60
    if h < 8:
        return "%dh%dm" % (h, m % 60) if m % 60 else "%dh" % h
    if h < 48:
        return "%dh" % h
    if h < 24 * 8:
        return "%dd%dh" % (h // 24, h % 24) if h % 24 else "%dd" % (h // 24)
    if h < 24 * 365 * 2:
        return "%dd" % (h // 24)
    if h < 24 * 365 * 8:
        return "%dy%dd" % (h // (24 * 365), (h // 24) % 365)
    return "%dy" % (h // (24 * 365))


def age(obj):
    ts = parse_rfc3339((obj.get("metadata") or {}).get("creationTimestamp") or "")
    if ts is None:
        return "<unknown>"
    return human_duration(time.time() - ts)


def _col(name, typ="string", desc="", fmt="", priority=0):
    return {"name": name, "type": typ, "format": fmt, "description": desc, "priority": priority}


def _pod_cells(o):
    spec, st = o.get("spec") or {}, o.get("status") or {}
    cs = st.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for c in cs if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in cs)
    reason = st.get("reason") or st.get("phase") or "Unknown"
    for c in cs:
        w = (c.get("state") or {}).get("waiting")
        t = (c.get("state") or {}).get("terminated")
        if w and w.get("reason"):
            reason = w["reason"]
        elif t and t.get("reason"):
            reason = t["reason"]
    if (o.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return ["%d/%d" % (ready, total), reason, restarts, age(o), st.get("podIP") or "<none>",
            spec.get("nodeName") or "<none>", "<none>", "<none>"]


def _csr_condition(o):
    conds = (o.get("status") or {}).get("conditions") or []
    names = [c.get("type") for c in conds if c.get("status", "True") == "True"]
    out = ",".join(n for n in names if n in ("Approved", "Denied", "Failed"))
    if not out:
        out = "Pending"
    if "Approved" in names and (o.get("status") or {}).get("certificate"):
        out += ",Issued"
    return out


def _node_status(o):
    conds = (o.get("status") or {}).get("conditions") or []
    ready = next((c for c in conds if c.get("type") == "Ready"), None)
    s = "Ready" if ready and ready.get("status") == "True" else "NotReady" if ready and ready.get(
        "status") == "False" else "Unknown"
    if (o.get("spec") or {}).get("unschedulable"):
        s += ",SchedulingDisabled"
    return s


def _sel(sel):
    ml = (sel or {}).get("matchLabels") or {}
    return ",".join("%s=%s" % kv for kv in sorted(ml.items())) or "<none>"


def _containers(tmpl, what):
    cs = ((tmpl or {}).get("spec") or {}).get("containers") or []
    return ",".join(c.get(what, "") for c in cs)


BUILTIN = {
    "pods": ([_col("Ready", desc="The aggregate readiness state of this pod for accepting traffic."),
              _col("Status", desc="The aggregate status of the containers in this pod."),
              _col("Restarts", "integer", "The number of times the containers in this pod have been restarted."),
              _col("Age", desc=AGE_DESC), _col("IP", desc="IP address allocated to the pod.", priority=1),
              _col("Node", desc="Name of the Node this pod is scheduled to.", priority=1),
              _col("Nominated Node", priority=1), _col("Readiness Gates", priority=1)], _pod_cells),
    "secrets": ([_col("Type", desc="Used to facilitate programmatic handling of secret data."),
                 _col("Data", desc="Data contains the secret data."), _col("Age", desc=AGE_DESC)],
                lambda o: [o.get("type", ""), len(o.get("data") or {}), age(o)]),
    "configmaps": ([_col("Data"), _col("Age", desc=AGE_DESC)],
                   lambda o: [len(o.get("data") or {}) + len(o.get("binaryData") or {}), age(o)]),
    "serviceaccounts": ([_col("Secrets"), _col("Age", desc=AGE_DESC)],
                        lambda o: [len(o.get("secrets") or []), age(o)]),
    "namespaces": ([_col("Status"), _col("Age", desc=AGE_DESC)],
                   lambda o: [(o.get("status") or {}).get("phase", ""), age(o)]),
    "nodes": ([_col("Status"), _col("Roles"), _col("Age", desc=AGE_DESC), _col("Version")],
              lambda o: [_node_status(o), ",".join(sorted(k.split("/", 1)[1] for k in (o["metadata"].get("labels")
                                                                                       or {}) if k.startswith(
                  "node-role.kubernetes.io/"))) or "<none>", age(o),
                  ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")]),
    "certificates.k8s.io/certificatesigningrequests": (
        [_col("Age", desc=AGE_DESC), _col("SignerName"), _col("Requestor"), _col("RequestedDuration"),
         _col("Condition")],
        lambda o: [age(o), (o.get("spec") or {}).get("signerName", ""), (o.get("spec") or {}).get("username", ""),
                   "<none>" if not (o.get("spec") or {}).get("expirationSeconds") else
                   human_duration((o.get("spec") or {}).get("expirationSeconds")), _csr_condition(o)]),
    "apps/deployments": ([_col("Ready"), _col("Up-to-date", "integer"), _col("Available", "integer"),
                          _col("Age", desc=AGE_DESC), _col("Containers", priority=1), _col("Images", priority=1),
                          _col("Selector", priority=1)],
                         lambda o: ["%d/%d" % ((o.get("status") or {}).get("readyReplicas", 0),
                                               (o.get("spec") or {}).get("replicas", 0)),
                                    (o.get("status") or {}).get("updatedReplicas", 0),
                                    (o.get("status") or {}).get("availableReplicas", 0), age(o),
                                    _containers((o.get("spec") or {}).get("template"), "name"),
                                    _containers((o.get("spec") or {}).get("template"), "image"),
                                    _sel((o.get("spec") or {}).get("selector"))]),
    "apps/replicasets": ([_col("Desired", "integer"), _col("Current", "integer"), _col("Ready", "integer"),
                          _col("Age", desc=AGE_DESC)],
                         lambda o: [(o.get("spec") or {}).get("replicas", 0), (o.get("status") or {}).get("replicas", 0),
                                    (o.get("status") or {}).get("readyReplicas", 0), age(o)]),
    "apps/statefulsets": ([_col("Ready"), _col("Age", desc=AGE_DESC)],
                          lambda o: ["%d/%d" % ((o.get("status") or {}).get("readyReplicas", 0),
                                                (o.get("spec") or {}).get("replicas", 0)), age(o)]),
    "apps/daemonsets": ([_col("Desired", "integer"), _col("Current", "integer"), _col("Ready", "integer"),
                         _col("Up-to-date", "integer"), _col("Available", "integer"), _col("Node Selector"),
                         _col("Age", desc=AGE_DESC)],
                        lambda o: [(o.get("status") or {}).get(k, 0) for k in (
                            "desiredNumberScheduled", "currentNumberScheduled", "numberReady", "updatedNumberScheduled",
                            "numberAvailable")] + [",".join("%s=%s" % kv for kv in sorted((((o.get("spec") or {}).get(
                                "template") or {}).get("spec") or {}).get("nodeSelector", {}).items())) or "<none>",
                            age(o)]),
    "policy/poddisruptionbudgets": ([_col("Min Available"), _col("Max Unavailable"), _col("Allowed Disruptions",
                                                                                          "integer"),
                                     _col("Age", desc=AGE_DESC)],
                                    lambda o: [str((o.get("spec") or {}).get("minAvailable", "N/A")),
                                               str((o.get("spec") or {}).get("maxUnavailable", "N/A")),
                                               (o.get("status") or {}).get("disruptionsAllowed", 0), age(o)]),
    "coordination.k8s.io/leases": ([_col("Holder"), _col("Age", desc=AGE_DESC)],
                                   lambda o: [(o.get("spec") or {}).get("holderIdentity", ""), age(o)]),
    "events": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")],
               lambda o: [age(o), o.get("type", ""), o.get("reason", ""), "%s/%s" % (
                   ((o.get("involvedObject") or {}).get("kind") or "").lower(),
                   (o.get("involvedObject") or {}).get("name", "")), o.get("message", "")]),
    "batch/jobs": ([_col("Completions"), _col("Age", desc=AGE_DESC)],
                   lambda o: ["%d/%d" % ((o.get("status") or {}).get("succeeded", 0),
                                         (o.get("spec") or {}).get("completions", 1)), age(o)]),
    "apiextensions.k8s.io/customresourcedefinitions": ([_col("Created At", "date")],
                                                       lambda o: [o["metadata"].get("creationTimestamp")]),
}


def jsonpath(obj, path):
    """Minimal JSONPath for printer columns: .a.b, .a[0].b, .a[*].b, .a['x.y'] and filters
    .a[?(@.k=="v")].b / [?(@.k!="v")] (what CRD printer columns commonly use for conditions)."""
    import re
    p = path.strip()
    if p.startswith("{") and p.endswith("}"):
        p = p[1:-1]
    if p.startswith("$"):
        p = p[1:]
    toks = re.findall(r"\.([A-Za-z0-9_\-]+)|\[(\d+|\*)\]|\['([^']+)'\]|\[\"([^\"]+)\"\]"
                      r"|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*(==|!=)\s*[\"']([^\"']*)[\"']\)\]", p)
    cur = [obj]
    for name, idx, q1, q2, fkey, fop, fval in toks:
        nxt = []
        key = name or q1 or q2
        for c in cur:
            if fkey:
                for item in c if isinstance(c, list) else []:
                    v = item
                    for part in fkey.split("."):
                        v = v.get(part) if isinstance(v, dict) else None
                    if (str(v) == fval if v is not None else False) == (fop == "=="):
                        nxt.append(item)
            elif key:
                if isinstance(c, dict) and key in c:
                    nxt.append(c[key])
            elif idx == "*":
                if isinstance(c, list):
                    nxt.extend(c)
            else:
                if isinstance(c, list) and int(idx) < len(c):
                    nxt.append(c[int(idx)])
        cur = nxt
    return cur


def _crd_cell(obj, col):
    vals = jsonpath(obj, col.get("jsonPath", ""))
    if not vals:
        return None
    v = vals[0] if len(vals) == 1 else vals
    typ = col.get("type", "string")
    if typ == "date":
        ts = parse_rfc3339(v) if isinstance(v, str) else None
        return human_duration(time.time() - ts) if ts is not None else "<unknown>"
    if typ == "integer" and isinstance(v, (int, float)):
        return int(v)
    if typ == "number" and isinstance(v, (int, float)):
        return v
    if typ == "boolean" and isinstance(v, bool):
        return v
    if isinstance(v, (dict, list)):
        import json
        return json.dumps(v, separators=(",", ":"))
    return str(v) if typ == "string" else v


def columns_and_cells(info):
    if info.printer_columns is not None:
        cols = [_col("Name", desc=NAME_DESC, fmt="name")]
        pcs = info.printer_columns
        for c in pcs:
            desc = c.get("description") or "Custom resource definition column (in JSONPath format): %s" % c.get(
                "jsonPath", "")
            cols.append(_col(c.get("name", ""), c.get("type", "string"), desc, c.get("format", ""),
                             c.get("priority", 0)))
        return cols, lambda o: [_crd_cell(o, c) for c in pcs]
    from .store import STORAGE_ALIAS
    b = BUILTIN.get(STORAGE_ALIAS.get(info.key, info.key))  # the storage's table convertor
    cols = [_col("Name", desc=NAME_DESC, fmt="name")]
    if b:
        return cols + b[0], b[1]
    return cols + [_col("Age", desc=AGE_DESC)], lambda o: [age(o)]


def partial_metadata(meta, api_version="meta.k8s.io/v1"):
    return {"kind": "PartialObjectMetadata", "apiVersion": api_version, "metadata": meta}


def to_table(info, objs, list_meta, render_meta, include_object="Metadata", table_version="v1",
             render_full=None, with_columns=True):
    """objs: stored dicts; render_meta(obj) -> ordered metadata incl. selfLink."""
    cols, cells = columns_and_cells(info)
    rows = []
    api = "meta.k8s.io/" + table_version
    for o in objs:
        row = {"cells": [o["metadata"].get("name", "")] + cells(o)}
        if include_object == "Object" and render_full is not None:
            row["object"] = render_full(o)
        elif include_object != "None":
            row["object"] = partial_metadata(render_meta(o), api)
        rows.append(row)
    out = {"kind": "Table", "apiVersion": api, "metadata": list_meta}
    out["columnDefinitions"] = cols if with_columns else []
    out["rows"] = rows
    return out
