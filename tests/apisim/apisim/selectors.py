"""Label and field selectors (k8s.io/apimachinery labels / fields semantics)."""

import re

from . import errors

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


_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile("^" + _QNAME_FMT + "$")
_QNAME_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
              "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '%s')" % _QNAME_FMT)
_LABEL_VALUE_RE = re.compile("^(" + _QNAME_FMT + ")?$")
_LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
                    "must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
                    "regex used for validation is '(%s)?')" % _QNAME_FMT)
_DNS1123_SUB_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_SUB_MSG = ("%s must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an "
                    "alphanumeric character (e.g. 'example.com', regex used for validation is "
                    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def qualified_name_errors(value, modern=True):
    """k8s.io/apimachinery validation.IsQualifiedName."""
    errs = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errs.append("prefix part must be no more than 253 characters")
            if not _DNS1123_SUB_RE.match(prefix):
                errs.append("prefix part " + _DNS1123_SUB_MSG % (
                    "a lowercase RFC 1123 subdomain" if modern else "a DNS-1123 subdomain"))
    else:
        return ["a qualified name " + _QNAME_MSG + " with an optional DNS subdomain prefix and '/' (e.g. "
                "'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not _QNAME_RE.match(name):
        errs.append("name part " + _QNAME_MSG)
    return errs


def label_value_errors(value):
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.match(value):
        errs.append(_LABEL_VALUE_MSG)
    return errs


def _go_quote(s):
    import json
    return json.dumps(s, ensure_ascii=False)


# ---- k8s.io/apimachinery/pkg/labels/selector.go: lexer and parser, same tokens, same error texts
_SPECIAL = set("=!(),><")
_TOKENS = {")": "CLOSEDPAR", ",": "COMMA", "!": "DOESNOTEXIST", "==": "DOUBLEEQUALS", "=": "EQUALS", ">": "GT",
           "in": "IN", "<": "LT", "!=": "NOTEQUALS", "notin": "NOTIN", "(": "OPENPAR"}
_BINARY_OPS = "in, notin, =, ==, !=, gt, lt"


def _lex(text):
    """[(token, literal)] ending with ("END", "")."""
    out, i, n = [], 0, len(text)
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            out.append(("END", ""))
            return out
        if text[i] in _SPECIAL:
            buf, last = "", None
            while i < n and text[i] in _SPECIAL:
                buf += text[i]
                if buf in _TOKENS:
                    last = (_TOKENS[buf], buf)
                    i += 1
                elif last is not None:
                    break
                else:
                    i += 1
            if last is None:
                out.append(("ERROR", "error expected: keyword found '%s'" % buf))
            else:
                out.append(last)
            continue
        j = i
        while j < n and text[j] not in _SPECIAL and text[j] not in " \t\r\n":
            j += 1
        word = text[i:j]
        i = j
        out.append((_TOKENS.get(word, "IDENT") if word in ("in", "notin") else "IDENT", word))


class _Parser:
    def __init__(self, text, modern):
        self.items, self.pos, self.modern = _lex(text), 0, modern

    def _look(self, values=True):
        tok, lit = self.items[self.pos]
        if values and tok in ("IN", "NOTIN"):
            tok = "IDENT"
        return tok, lit

    def _take(self, values=True):
        tok, lit = self._look(values)
        if self.pos < len(self.items) - 1:
            self.pos += 1
        return tok, lit

    def parse(self):
        reqs = []
        while True:
            tok, lit = self._look()
            if tok in ("IDENT", "DOESNOTEXIST"):
                try:
                    reqs.append(self._requirement())
                except ValueError as e:
                    raise ValueError("unable to parse requirement: %s" % e)
                t, lit2 = self._take()
                if t == "END":
                    return reqs
                if t == "COMMA":
                    t2, l2 = self._look()
                    if t2 not in ("IDENT", "DOESNOTEXIST"):
                        raise ValueError("found '%s', expected: identifier after ','" % l2)
                else:
                    raise ValueError("found '%s', expected: ',' or 'end of string'" % lit2)
            elif tok == "END":
                return reqs
            else:
                raise ValueError("found '%s', expected: !, identifier, or 'end of string'" % lit)

    def _requirement(self):
        tok, lit = self._take()
        op = None
        if tok == "DOESNOTEXIST":
            op = "!"
            tok, lit = self._take()
        if tok != "IDENT":
            raise ValueError("found '%s', expected: identifier" % lit)
        self._check_key(lit)
        key = lit
        if self._look()[0] in ("END", "COMMA"):
            return key, op or "exists", set()
        if op == "!":
            return key, op, set()
        tok, lit = self._take(values=False)
        ops = {"IN": "in", "EQUALS": "=", "DOUBLEEQUALS": "=", "GT": "gt", "LT": "lt", "NOTIN": "notin",
               "NOTEQUALS": "!="}
        if tok not in ops:
            raise ValueError("found '%s', expected: %s" % (lit, _BINARY_OPS))
        op = ops[tok]
        vals = self._values() if op in ("in", "notin") else self._exact()
        if op in ("gt", "lt"):
            for v in vals:
                try:
                    int(v)
                except ValueError:
                    raise ValueError(self._field_err("values[0]", v, "for 'Gt', 'Lt' operators, the value must be "
                                                     "an integer") if self.modern else
                                     "for 'Gt', 'Lt' operators, the value must be an integer")
        for i, v in enumerate(sorted(vals)):
            errs = label_value_errors(v)
            if errs:
                if self.modern:
                    raise ValueError(self._field_err("values[%d][%s]" % (i, key), v, "; ".join(errs)))
                raise ValueError("invalid label value: %s: at key: %s: %s" % (_go_quote(v), _go_quote(key),
                                                                              "; ".join(errs)))
        return key, op, vals

    @staticmethod
    def _field_err(path, value, detail):
        return "%s: Invalid value: %s: %s" % (path, _go_quote(value), detail)

    def _check_key(self, key):
        errs = qualified_name_errors(key, self.modern)
        if errs:
            if self.modern:  # 1.26 validates the key against a nil field path
                raise ValueError(self._field_err("<nil>", key, "; ".join(errs)))
            raise ValueError("invalid label key %s: %s" % (_go_quote(key), "; ".join(errs)))

    def _values(self):
        tok, lit = self._take()
        if tok != "OPENPAR":
            raise ValueError("found '%s' expected: '('" % lit)
        tok, lit = self._look()
        if tok in ("IDENT", "COMMA"):
            vals = self._ident_list()
            if self._take()[0] != "CLOSEDPAR":
                raise ValueError("found '%s', expected: ')'" % lit)
            return vals
        if tok == "CLOSEDPAR":
            self._take()
            return {""}
        raise ValueError("found '%s', expected: ',', ')' or identifier" % lit)

    def _ident_list(self):
        vals = set()
        while True:
            tok, lit = self._take()
            if tok == "IDENT":
                vals.add(lit)
                t2, l2 = self._look()
                if t2 == "COMMA":
                    continue
                if t2 == "CLOSEDPAR":
                    return vals
                raise ValueError("found '%s', expected: ',' or ')'" % l2)
            if tok == "COMMA":
                if not vals:
                    vals.add("")
                t2 = self._look()[0]
                if t2 == "CLOSEDPAR":
                    vals.add("")
                    return vals
                if t2 == "COMMA":
                    self._take()
                    vals.add("")
            else:
                raise ValueError("found '%s', expected: ',', or identifier" % lit)

    def _exact(self):
        tok = self._look()[0]
        if tok in ("END", "COMMA"):
            return {""}
        tok, lit = self._take()
        if tok == "IDENT":
            return {lit}
        raise ValueError("found '%s', expected: identifier" % lit)


class LabelSelector:
    """Parsed labelSelector (labels.Parse); .matches(labels_dict).  400 with the real parser's message."""

    def __init__(self, text, modern=True):
        self.text = text or ""
        try:
            self.reqs = _Parser(self.text, modern).parse()
        except ValueError as e:
            raise errors.bad_request(str(e))

    def empty(self):
        return not self.reqs

    def matches(self, labels):
        labels = labels or {}
        for key, op, vals in self.reqs:
            has = key in labels
            v = labels.get(key)
            if op == "=":
                if not has or v not in vals:
                    return False
            elif op == "!=":
                if has and v in vals:
                    return False
            elif op == "in":
                if not has or v not in vals:
                    return False
            elif op == "notin":
                if has and v in vals:
                    return False
            elif op == "exists":
                if not has:
                    return False
            elif op == "!":
                if has:
                    return False
            elif op in ("gt", "lt"):
                try:
                    have, want = int(v), int(next(iter(vals)))
                except (TypeError, ValueError):
                    return False
                if (have <= want) if op == "gt" else (have >= want):
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


def make_predicate(info, label_text, field_text, modern=True):
    """Returns None (no filtering) or predicate(obj).  modern: 1.26's error texts (else 1.19's)."""
    ls = LabelSelector(label_text, modern) if label_text else None
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
