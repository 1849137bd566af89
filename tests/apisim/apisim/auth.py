"""Authentication: client certificates, service-account JWTs (legacy + bound), anonymous."""

import base64
import json

from . import errors, pki as pkimod


class User:
    def __init__(self, name, groups=(), uid="", extra=None):
        self.name = name
        self.groups = list(groups)
        self.uid = uid
        self.extra = extra or {}

    @property
    def is_admin(self):
        return "system:masters" in self.groups

    def to_dict(self):
        d = {"username": self.name}
        if self.uid:
            d["uid"] = self.uid
        d["groups"] = list(self.groups)
        if self.extra:
            d["extra"] = self.extra
        return d

    def __repr__(self):
        return "<User %s %s>" % (self.name, self.groups)


ANONYMOUS = User("system:anonymous", ["system:unauthenticated"])


def user_from_cert(peercert):
    """peercert: ssl getpeercert() dict -> User or None."""
    if not peercert:
        return None
    cn, orgs = None, []
    for rdn in peercert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                cn = v
            elif k == "organizationName":
                orgs.append(v)
    if not cn:
        return None
    groups = list(orgs)
    if "system:authenticated" not in groups:
        groups.append("system:authenticated")
    return User(cn, groups)


def _jwt_parts(token):
    try:
        h, p, _s = token.split(".")
        return json.loads(pkimod.b64url_decode(h)), json.loads(pkimod.b64url_decode(p))
    except Exception:  # noqa: BLE001
        return None, None


def _sa_user(ns, name, uid):
    return User("system:serviceaccount:%s:%s" % (ns, name),
                ["system:serviceaccounts", "system:serviceaccounts:%s" % ns, "system:authenticated"], uid)


def authenticate_token(sim, token):
    """Returns (User, audiences, error_string).  User None = not authenticated; error_string as TokenReview."""
    header, claims_unverified = _jwt_parts(token)
    if header is None or not isinstance(claims_unverified, dict):
        return None, None, None  # not a JWT: no authenticator claims it
    iss = claims_unverified.get("iss")
    if iss not in (pkimod.LEGACY_ISSUER, pkimod.ISSUER):
        return None, None, None
    claims = sim.pki.verify_jwt(token)
    if claims is None:
        unv = claims_unverified
        import time
        if isinstance(unv.get("exp"), (int, float)) and time.time() > unv["exp"] and \
                _signature_ok_ignoring_time(sim, token):
            return None, None, "[invalid bearer token, square/go-jose/jwt: validation failed, token is expired (exp)]"
        return None, None, "[invalid bearer token, square/go-jose: error in cryptographic primitive]"
    store = sim.store
    if iss == pkimod.LEGACY_ISSUER:
        # pkg/serviceaccount/legacy.go: the Secret first, then the ServiceAccount
        ns = claims.get("kubernetes.io/serviceaccount/namespace", "")
        sname = claims.get("kubernetes.io/serviceaccount/secret.name", "")
        saname = claims.get("kubernetes.io/serviceaccount/service-account.name", "")
        sauid = claims.get("kubernetes.io/serviceaccount/service-account.uid", "")
        secret = store.get_ref("secrets", ns, sname)
        if secret is None or secret["metadata"].get("deletionTimestamp"):
            return None, None, "[invalid bearer token, Token has been invalidated]"
        data = (secret.get("data") or {}).get("token", "")
        try:
            have = base64.b64decode(data).decode()
        except Exception:  # noqa: BLE001
            have = ""
        if have != token:
            return None, None, "[invalid bearer token, Token does not match server's copy]"
        err = _check_sa(store, ns, saname, sauid)
        if err:
            return None, None, err
        return _sa_user(ns, saname, sauid), [pkimod.ISSUER], None
    # bound token (pkg/serviceaccount/claims.go): audiences, ServiceAccount, then the bound Secret / Pod
    aud = claims.get("aud") or []
    if isinstance(aud, str):
        aud = [aud]
    if pkimod.ISSUER not in aud:
        return None, None, "[invalid bearer token, token audiences %s is invalid for the target audiences %s]" % (
            _go_q(aud), _go_q([pkimod.ISSUER]))
    k8s = claims.get("kubernetes.io") or {}
    ns = k8s.get("namespace", "")
    sainfo = k8s.get("serviceaccount") or {}
    err = _check_sa(store, ns, sainfo.get("name", ""), sainfo.get("uid", ""))
    if err:
        return None, None, err
    for kind, res in (("secret", "secrets"), ("pod", "pods")):
        ref = k8s.get(kind)
        if ref:
            o = store.get_ref(res, ns, ref.get("name", ""))
            if o is None or o["metadata"].get("deletionTimestamp"):
                return None, None, "[invalid bearer token, Token has been invalidated]"
            if o["metadata"].get("uid") != ref.get("uid"):
                return None, None, "[invalid bearer token, %s UID (%s) does not match claim (%s)]" % (
                    kind.capitalize(), o["metadata"].get("uid"), ref.get("uid"))
    user = _sa_user(ns, sainfo.get("name", ""), sainfo.get("uid", ""))
    if k8s.get("pod"):
        user.extra = {"authentication.kubernetes.io/pod-name": [k8s["pod"]["name"]],
                      "authentication.kubernetes.io/pod-uid": [k8s["pod"].get("uid", "")]}
    return user, aud, None


def _check_sa(store, ns, name, uid):
    """The ServiceAccount checks of both token validators: None, or the TokenReview error."""
    sa = store.get_ref("serviceaccounts", ns, name)
    if sa is None:
        return '[invalid bearer token, serviceaccounts "%s" not found]' % name
    if sa["metadata"].get("deletionTimestamp"):
        return "[invalid bearer token, ServiceAccount %s/%s has been deleted]" % (ns, name)
    if sa["metadata"].get("uid") != uid:
        return "[invalid bearer token, ServiceAccount UID (%s) does not match claim (%s)]" % (
            sa["metadata"].get("uid"), uid)
    return None


def _go_q(strings):
    """Go's %q of a []string: ["a" "b"]."""
    return "[" + " ".join(json.dumps(x) for x in strings) + "]"


def _signature_ok_ignoring_time(sim, token):
    try:
        h, p, s = token.split(".")
        header = json.loads(pkimod.b64url_decode(h))
        for key in sim.pki.sa_keys:
            if header.get("alg") == key.alg and key.verify((h + "." + p).encode(), pkimod.b64url_decode(s)):
                return True
    except Exception:  # noqa: BLE001
        pass
    return False


def authenticate(sim, handler):
    """User for an HTTP request; raises ApiError 401 for a bad bearer token."""
    authz = handler.headers.get("Authorization")
    if authz is not None:
        parts = authz.strip().split(" ", 1)
        if len(parts) >= 1 and parts[0].lower() == "bearer":
            token = parts[1].strip() if len(parts) == 2 else ""
            if token:
                user, _aud, _err = authenticate_token(sim, token)
                if user is None:
                    raise errors.unauthorized()
                return user
            # an empty bearer token is ignored -> next authenticators / anonymous
    try:
        cert = handler.connection.getpeercert()
    except Exception:  # noqa: BLE001
        cert = None
    user = user_from_cert(cert)
    if user is not None:
        return user
    return ANONYMOUS


def impersonate(sim, handler, user):
    """Applies Impersonate-User / Impersonate-Group / Impersonate-Uid headers like the real
    impersonation filter: the requester needs `impersonate` on users (serviceaccounts for
    system:serviceaccount:<ns>:<name>), groups and uids; the impersonated user gets
    system:authenticated (and the service-account groups).  Returns the effective user."""
    from . import rbac
    name = handler.headers.get("Impersonate-User")
    groups = handler.headers.get_all("Impersonate-Group") or []
    uid = handler.headers.get("Impersonate-Uid")
    if name is None:
        if groups or uid:
            raise errors.ApiError(400, "BadRequest", "requested %s without impersonating a user" % (
                ["Group " + g for g in groups] + (["UID " + uid] if uid else [])))
        return user
    checks = []
    if name.startswith("system:serviceaccount:") and name.count(":") == 3:
        _, _, ns, sa = name.split(":")
        checks.append(rbac.Attrs("impersonate", group="", resource="serviceaccounts", name=sa, namespace=ns))
    else:
        checks.append(rbac.Attrs("impersonate", group="", resource="users", name=name))
    checks += [rbac.Attrs("impersonate", group="", resource="groups", name=g) for g in groups]
    if uid:
        checks.append(rbac.Attrs("impersonate", group="authentication.k8s.io", resource="uids", name=uid))
    for a in checks:
        if not rbac.authorize(sim.store, user, a):
            raise rbac.forbidden_error(user, a)
    groups = list(groups)
    if name.startswith("system:serviceaccount:") and name.count(":") == 3:
        for g in ("system:serviceaccounts", "system:serviceaccounts:" + name.split(":")[2]):
            if g not in groups:
                groups.append(g)
    if name != "system:anonymous" and "system:authenticated" not in groups:
        groups.append("system:authenticated")
    return User(name, groups, uid or "")


def token_review(sim, body):
    """TokenReview create -> response dict (always 201)."""
    spec = body.get("spec") or {}
    token = spec.get("token", "")
    if not token:
        raise errors.bad_request("token is required for TokenReview in authentication")
    user, aud, err = authenticate_token(sim, token) if token else (None, None, None)
    out = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
           "metadata": {"creationTimestamp": None}, "spec": dict(spec)}
    if user is not None:
        out["status"] = {"authenticated": True, "user": user.to_dict(), "audiences": aud}
    else:
        # bearertoken's default when no authenticator claimed the token (not a JWT, another issuer)
        out["status"] = {"user": {}, "error": err or "invalid bearer token"}
    return out
