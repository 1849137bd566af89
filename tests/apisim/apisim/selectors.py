"""Label and field selectors (k8s.io/apimachinery labels / fields semantics)."""

import re

from . import errors

_KEY_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def _split_top(text):
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


class LabelSelector:
    """Parsed labelSelector; .matches(labels_dict)."""

    def __init__(self, text):
        self.text = text or ""
        self.reqs = []
        for part in _split_top(self.text):
            self.reqs.append(self._parse(part))

    @staticmethod
    def _bad(part, why):
        return errors.bad_request("unable to parse requirement: %s" % why if why else
                                  "unable to parse requirement: %s" % part)

    def _parse(self, part):
        m = re.match(r"^(\S+)\s+(in|notin)\s*\((.*)\)$", part)
        if m:
            key, op, vals = m.group(1), m.group(2), [v.strip() for v in m.group(3).split(",") if v.strip()]
            self._check_key(key)
            return (key, op, set(vals))
        if part.startswith("!"):
            key = part[1:].strip()
            self._check_key(key)
            return (key, "!", None)
        for op in ("==", "!=", "="):
            if op in part:
                key, val = part.split(op, 1)
                key, val = key.strip(), val.strip()
                self._check_key(key)
                return (key, "!=" if op == "!=" else "=", val)
        key = part.strip()
        self._check_key(key)
        return (key, "exists", None)

    @staticmethod
    def _check_key(key):
        if not _KEY_RE.match(key) or len(key.split("/")[-1]) > 63:
            raise errors.bad_request("unable to parse requirement: invalid label key \"%s\": name part must consist "
                                     "of alphanumeric characters, '-', '_' or '.', and must start and end with an "
                                     "alphanumeric character" % key)

    def empty(self):
        return not self.reqs

    def matches(self, labels):
        labels = labels or {}
        for key, op, val in self.reqs:
            has = key in labels
            v = labels.get(key)
            if op == "=":
                if not has or v != val:
                    return False
            elif op == "!=":
                if has and v == val:
                    return False
            elif op == "in":
                if not has or v not in val:
                    return False
            elif op == "notin":
                if has and v in val:
                    return False
            elif op == "exists":
                if not has:
                    return False
            elif op == "!":
                if has:
                    return False
        return True


def selector_from_match_labels(sel):
    """metav1.LabelSelector dict -> predicate(labels)."""
    if sel is None:
        return lambda labels: False
    ml = sel.get("matchLabels") or {}
    exprs = sel.get("matchExpressions") or []

    def pred(labels):
        labels = labels or {}
        for k, v in ml.items():
            if labels.get(k) != v:
                return False
        for e in exprs:
            k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
            if op == "In" and labels.get(k) not in vals:
                return False
            if op == "NotIn" and k in labels and labels[k] in vals:
                return False
            if op == "Exists" and k not in labels:
                return False
            if op == "DoesNotExist" and k in labels:
                return False
        return True
    return pred


class FieldSelector:
    """Parsed fieldSelector for a resource; .matches(obj)."""

    def __init__(self, text, info):
        self.text = text or ""
        self.reqs = []
        for part in _split_top(self.text):
            for op in ("==", "!=", "="):
                if op in part:
                    key, val = part.split(op, 1)
                    key, val = key.strip(), val.strip()
                    getter = info.field_selectors.get(key) if info is not None else None
                    if getter is None:
                        raise errors.bad_request('field label not supported: %s' % key)
                    self.reqs.append((getter, op != "!=", val))
                    break
            else:
                raise errors.bad_request("invalid selector: '%s'; can't understand '%s'" % (self.text, part))

    def empty(self):
        return not self.reqs

    def matches(self, obj):
        for getter, eq, val in self.reqs:
            if (getter(obj) == val) != eq:
                return False
        return True


def make_predicate(info, label_text, field_text):
    """Returns None (no filtering) or predicate(obj)."""
    ls = LabelSelector(label_text) if label_text else None
    fs = FieldSelector(field_text, info) if field_text else None
    if ls is not None and ls.empty():
        ls = None
    if fs is not None and fs.empty():
        fs = None
    if ls is None and fs is None:
        return None

    def pred(obj):
        if ls is not None and not ls.matches((obj.get("metadata") or {}).get("labels")):
            return False
        if fs is not None and not fs.matches(obj):
            return False
        return True
    return pred
