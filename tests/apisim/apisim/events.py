"""Events: core/v1 and events.k8s.io/v1(beta1) are two views of ONE stored object (kube-apiserver keeps a single
registry; k8s.io/kubernetes/pkg/apis/events/v1/conversion.go).  The store holds the core/v1 shape; this module
converts, renders with Go's omitempty rules, validates like pkg/apis/core/validation/events.go, and parses the
MicroTime/Time fields (a MicroTime must carry exactly 6 fractional digits, or the body cannot be decoded)."""

import datetime
import re

from . import errors

# events.k8s.io/v1 field <-> core/v1 field (same value)
_SAME = ("eventTime", "series", "reportingInstance", "action", "reason", "related", "type")
_RENAMED = (("regarding", "involvedObject"), ("note", "message"), ("deprecatedSource", "source"),
            ("deprecatedFirstTimestamp", "firstTimestamp"), ("deprecatedLastTimestamp", "lastTimestamp"),
            ("deprecatedCount", "count"), ("reportingController", "reportingComponent"))

RFC3339_MICRO = "2006-01-02T15:04:05.000000Z07:00"
_MICRO_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})(Z|[+-]\d\d:\d\d)$")
_TIME_RE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$")

# field selectors of events.k8s.io (AddFieldLabelConversionsForEvent): label -> core field
V1_FIELD_LABELS = {"reason": "reason", "reportingController": "reportingComponent", "type": "type"}
for _f in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"):
    V1_FIELD_LABELS["regarding." + _f] = "involvedObject." + _f


def _parse(text, micro):
    m = (_MICRO_RE if micro else _TIME_RE).match(text) if isinstance(text, str) else None
    if m is None:
        return None
    base = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    frac = m.group(2) if micro else (m.group(2) or ".0")[1:7].ljust(6, "0")
    base = base.replace(microsecond=int(frac))
    tz = m.group(3)
    if tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        base -= sign * datetime.timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
    return base


def bad_time(kind, version, text, micro):
    """400 of a body whose (Micro)Time does not parse (1.26 wording)."""
    if micro:
        m = re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", text or "")
        rest = (text or "")[m.end():] if m else text
        why = 'cannot parse "%s" as ".000000"' % rest if m else 'cannot parse "%s" as "2006"' % text
        layout = RFC3339_MICRO
    else:
        why, layout = 'cannot parse "%s" as "2006"' % text, "2006-01-02T15:04:05Z07:00"
    return errors.bad_request('%s in version "%s" cannot be handled as a %s: parsing time "%s" as "%s": %s' % (
        kind, version, kind, text, layout, why))


def normalize_time(obj, path, micro, kind, version):
    """Re-formats obj[path...] as the server prints it (UTC; MicroTime 6 digits, Time whole seconds); 400 when it
    does not parse.  Missing / null fields are left alone."""
    parent = obj
    for p in path[:-1]:
        parent = parent.get(p) if isinstance(parent, dict) else None
    if not isinstance(parent, dict) or parent.get(path[-1]) in (None, ""):
        return
    text = parent[path[-1]]
    t = _parse(text, micro)
    if t is None:
        raise bad_time(kind, version, text if isinstance(text, str) else str(text), micro)
    parent[path[-1]] = t.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if micro else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_core_times(ev, version, kind="Event"):
    normalize_time(ev, ("eventTime",), True, kind, version)
    normalize_time(ev, ("series", "lastObservedTime"), True, kind, version)
    normalize_time(ev, ("firstTimestamp",), False, kind, version)
    normalize_time(ev, ("lastTimestamp",), False, kind, version)


def to_core(v1):
    """An events.k8s.io/v1 (or v1beta1) body -> the stored core/v1 shape."""
    out = {"metadata": v1.get("metadata") or {}}
    for f in _SAME:
        if f in v1:
            out[f] = v1[f]
    for new, old in _RENAMED:
        if new in v1:
            out[old] = v1[new]
    return out


def core_out(ev):
    """A stored Event as core/v1 serializes it (omitempty rules of k8s.io/api/core/v1.Event)."""
    out = {"metadata": ev.get("metadata") or {}, "involvedObject": ev.get("involvedObject") or {}}
    for f in ("reason", "message"):
        if ev.get(f):
            out[f] = ev[f]
    out["source"] = ev.get("source") or {}
    out["firstTimestamp"] = ev.get("firstTimestamp")
    out["lastTimestamp"] = ev.get("lastTimestamp")
    if ev.get("count"):
        out["count"] = ev["count"]
    if ev.get("type"):
        out["type"] = ev["type"]
    out["eventTime"] = ev.get("eventTime")
    for f in ("series", "action", "related"):
        if ev.get(f):
            out[f] = ev[f]
    out["reportingComponent"] = ev.get("reportingComponent") or ""
    out["reportingInstance"] = ev.get("reportingInstance") or ""
    return out


def from_core(ev):
    """A stored Event as events.k8s.io/v1 serializes it."""
    out = {"metadata": ev.get("metadata") or {}, "eventTime": ev.get("eventTime")}
    if ev.get("series"):
        out["series"] = ev["series"]
    for new, old in (("reportingController", "reportingComponent"), ("reportingInstance", "reportingInstance"),
                     ("action", "action"), ("reason", "reason")):
        if ev.get(old):
            out[new] = ev[old]
    out["regarding"] = ev.get("involvedObject") or {}
    if ev.get("related"):
        out["related"] = ev["related"]
    if ev.get("message"):
        out["note"] = ev["message"]
    if ev.get("type"):
        out["type"] = ev["type"]
    out["deprecatedSource"] = ev.get("source") or {}
    out["deprecatedFirstTimestamp"] = ev.get("firstTimestamp")
    out["deprecatedLastTimestamp"] = ev.get("lastTimestamp")
    if ev.get("count"):
        out["deprecatedCount"] = ev["count"]
    return out


_QUALIFIED = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def validate_create(ev, strict, modern, causes):
    """pkg/apis/core/validation/events.go ValidateEventCreate on the core shape; strict = created through
    events.k8s.io/v1 (the v1 core API and events.k8s.io/v1beta1 get only the legacy checks)."""
    md = ev.get("metadata") or {}
    ns = md.get("namespace") or ""
    io = ev.get("involvedObject") or {}
    io_ns = io.get("namespace") or ""
    if not ev.get("eventTime"):
        if not io_ns:
            if ns not in ("", "default"):
                causes.append(errors.field_invalid("involvedObject.namespace", io_ns, "does not match event.namespace"))
        elif ns != io_ns:
            causes.append(errors.field_invalid("involvedObject.namespace", io_ns, "does not match event.namespace"))
    else:
        allowed = ("default", "kube-system") if modern else ("kube-system",)
        if not io_ns and ns not in allowed:
            causes.append(errors.field_invalid("involvedObject.namespace", io_ns, "does not match event.namespace"))
        rc = ev.get("reportingComponent") or ""
        if not rc:
            causes.append(errors.field_required("reportingController"))
        _qualified_name(rc, "reportingController", causes)
        if not ev.get("reportingInstance"):
            causes.append(errors.field_required("reportingInstance"))
        elif len(ev["reportingInstance"]) > 128:
            causes.append(errors.field_invalid("repotingIntance", "", "can have at most 128 characters"))
        for f, limit in (("action", 128), ("reason", 128)):
            if not ev.get(f):
                causes.append(errors.field_required(f))
            elif len(ev[f]) > limit:
                causes.append(errors.field_invalid(f, "", "can have at most %d characters" % limit))
        if len(ev.get("message") or "") > 1024:
            causes.append(errors.field_invalid("message", "", "can have at most 1024 characters"))
    if not strict:
        return
    if not ev.get("eventTime"):
        causes.append(errors.field_required("eventTime"))
    if ev.get("type") not in ("Normal", "Warning"):
        causes.append(errors.field_invalid("type", "", "has invalid value: %s" % (ev.get("type") or "")))
    for f in ("firstTimestamp", "lastTimestamp", "count"):
        if ev.get(f):
            causes.append(errors.field_invalid(f, "", "needs to be unset"))
    src = ev.get("source") or {}
    if src.get("component") or src.get("host"):
        causes.append(errors.field_invalid("source", "", "needs to be unset"))


def _qualified_name(value, field, causes):
    if not value:
        return
    name = value.rsplit("/", 1)[-1]
    if value.count("/") > 1 or not _QUALIFIED.match(name) or len(name) > 63:
        causes.append(errors.field_invalid(field, value, "name part must consist of alphanumeric characters, '-', "
                                           "'_' or '.', and must start and end with an alphanumeric character "
                                           "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                                           "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"))
