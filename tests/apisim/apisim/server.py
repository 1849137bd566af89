"""HTTPS front end of the simulator: routing, authn/authz, REST semantics, watch, discovery, Table."""

import base64
import json
import os
import posixpath
import queue
import random
import re
import socket
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import auth, errors, events as evmod, patch as patchmod, rbac, selectors, table as tablemod
from .pki import PKI, bound_token_claims
from .writelog import WriteLog, WRITE_VERBS
from .resources import ResourceInfo, Registry, VIRTUAL, STD_VERBS, SUB_VERBS, ZERO_STATUS, ZERO_STATUS_MODERN, \
    DS_TEMPLATE_GENERATION
from .store import Store, clone, now_rfc3339, random_suffix

VERSION_INFO = {"major": "1", "minor": "26", "gitVersion": "v1.26.0-apisim", "gitCommit": "apisim",
                "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z", "goVersion": "go1.19.4",
                "compiler": "gc", "platform": "linux/amd64"}
# /version per profile: modern behaves like kube-apiserver 1.26, legacy like 1.19
PROFILE_VERSION_INFO = {
    "modern": VERSION_INFO,
    "legacy": dict(VERSION_INFO, minor="19", gitVersion="v1.19.0-apisim", goVersion="go1.15.5"),
}

_META_ORDER = ("name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
               "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
               "ownerReferences", "finalizers", "managedFields")
_DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_CM_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
SUB_MSG = ("a DNS-1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and "
           "end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
           "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a DNS-1123 label must consist of lower case alphanumeric characters or '-', and must start and end with "
             "an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
             "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
CM_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
              "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")
NS_NAME_LABEL = "kubernetes.io/metadata.name"


def dns_msg(msg, sim):
    """1.22+ words DNS-1123 errors "a lowercase RFC 1123 subdomain/label", 1.19 "a DNS-1123 subdomain/label"."""
    if not sim.modern:
        return msg
    return msg.replace("a DNS-1123 subdomain", "a lowercase RFC 1123 subdomain").replace(
        "a DNS-1123 label", "a lowercase RFC 1123 label")
RETURN_DELETED_OBJECT = {"pods", "namespaces", "apiextensions.k8s.io/customresourcedefinitions", "services",
                         "serviceaccounts"}


def b64url_nopad(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def encode_continue(rv, start):
    return b64url_nopad(json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start}, separators=(",", ":")).encode())


_B64URL = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _go_b64url_raw(text):
    """base64.RawURLEncoding.DecodeString: bytes, or ValueError with Go's message."""
    for i, ch in enumerate(text):
        if ch not in _B64URL:
            raise ValueError("illegal base64 data at input byte %d" % i)
    if len(text) % 4 == 1:
        raise ValueError("illegal base64 data at input byte %d" % (len(text) - 1))
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _go_quote_char(ch):
    """encoding/json's quoteChar: the offending character as Go prints it."""
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    if ch.isprintable() and ord(ch) < 0x80:
        return "'%s'" % ch
    return "'\\u%04x'" % ord(ch) if ord(ch) < 0x10000 else "'\\U%08x'" % ord(ch)


_PY_TO_GO_JSON = (("Expecting value", "looking for beginning of value"),
                  ("Expecting property name", "looking for beginning of object key string"),
                  ("Expecting ':' delimiter", "after object key"),
                  ("Expecting ',' delimiter", "after object key:value pair"),
                  ("Extra data", "after top-level value"),
                  ("Invalid control character", "in string literal"))


def _go_json_error(raw):
    """The message of Go's json.Unmarshal for bytes Python's json cannot parse (the common cases)."""
    text = raw.decode("latin-1")
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        if e.pos >= len(text.rstrip()):
            return "unexpected end of JSON input"
        for py, go in _PY_TO_GO_JSON:
            if e.msg.startswith(py):
                return "invalid character %s %s" % (_go_quote_char(text[e.pos]), go)
        return "invalid character %s looking for beginning of value" % _go_quote_char(text[e.pos])
    return None


def decode_continue(token):
    """(rv, start) of a continue token, or 400 with kube-apiserver's messages (etcd3 decodeContinue)."""
    def bad(why):
        return errors.bad_request("invalid continue token: continue key is not valid: %s" % why)
    try:
        raw = _go_b64url_raw(token)
    except ValueError as e:
        raise bad(e)
    why = _go_json_error(raw)
    if why:
        raise bad(why)
    d = json.loads(raw.decode("latin-1"))
    if not isinstance(d, dict):
        raise bad("json: cannot unmarshal %s into Go value of type etcd3.continueToken" % _go_json_type(d))
    for f, want in (("v", str), ("rv", int), ("start", str)):
        if f in d and d[f] is not None and not (isinstance(d[f], want) and not isinstance(d[f], bool)):
            raise bad("json: cannot unmarshal %s into Go struct field continueToken.%s of type %s" % (
                _go_json_type(d[f]), f, "string" if want is str else "int64"))
    if d.get("v") != "meta.k8s.io/v1":
        raise bad('server does not recognize this encoded version "%s"' % (d.get("v") or ""))
    if not d.get("rv"):
        raise bad("incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    start = d.get("start") or ""
    if not start:
        raise bad("encoded start key empty (version meta.k8s.io/v1)")
    key = start if start.startswith("/") else "/" + start
    if posixpath.normpath(key) != key or key.startswith("//"):
        raise bad(start)
    return int(d["rv"]), start


def _go_json_type(v):
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.data = {}

    def add(self, verb, resource, subresource, code):
        k = (verb, resource or "", subresource or "", int(code))
        with self.lock:
            self.data[k] = self.data.get(k, 0) + 1

    def snapshot(self):
        with self.lock:
            items = sorted(self.data.items())
        out = [{"verb": k[0], "resource": k[1], "subresource": k[2], "code": k[3], "count": v} for k, v in items]
        total = sum(v for _, v in items)
        return {"total": total, "requests": out}

    def reset(self):
        with self.lock:
            self.data.clear()


class Faults:
    """Fault rules: {verb, resource, subresource, rate, code, retryAfter, latencyMs, count, message}."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.rng = random.Random(1234)

    def set(self, rules):
        with self.lock:
            self.rules = [dict(r) for r in rules]

    def clear(self):
        with self.lock:
            self.rules = []

    def match(self, verb, resource, subresource):
        """Returns (latency_seconds, ApiError or None)."""
        latency, err = 0.0, None
        with self.lock:
            for r in self.rules:
                if r.get("verb") not in (None, "", "*", verb):
                    continue
                rres = r.get("resource")
                if rres not in (None, "", "*"):
                    full = resource + ("/" + subresource if subresource else "")
                    if rres not in (resource, full):
                        continue
                if r.get("count") is not None and r["count"] <= 0:
                    continue
                if self.rng.random() >= float(r.get("rate", 1.0)):
                    continue
                if r.get("count") is not None:
                    r["count"] -= 1
                latency += float(r.get("latencyMs", 0)) / 1000.0
                code = int(r.get("code", 0) or 0)
                if code and err is None:
                    err = _fault_error(code, r)
        return latency, err


def _fault_error(code, r):
    msg = r.get("message")
    if code == 429:
        ra = int(r.get("retryAfter", 1))
        e = errors.too_many_requests(msg or "Too many requests, please try again later.", None, ra)
        e.details = {"retryAfterSeconds": ra}
        return e
    if code == 500:
        return errors.internal_error(msg or "injected fault")
    if code == 503:
        e = errors.service_unavailable(msg or "the server is currently unable to handle the request")
        if r.get("retryAfter") is not None:
            e.headers["Retry-After"] = str(int(r["retryAfter"]))
            e.details = {"retryAfterSeconds": int(r["retryAfter"])}
        return e
    if code == 504:
        return errors.ApiError(504, "Timeout", msg or "the server was unable to return a response in the time "
                                                      "allotted, but may still be processing the request", {})
    if code == 409:
        return errors.ApiError(409, "Conflict", msg or "injected conflict", {})
    return errors.ApiError(code, "InternalError" if code >= 500 else "BadRequest", msg or "injected fault", {})


class Watcher:
    """One watch stream; push() is called by the store under its lock (must be cheap)."""

    def __init__(self, namespace):
        self.ns = namespace
        self.q = queue.SimpleQueue()
        self.closed = False

    def push(self, ev):
        if self.ns:
            md = ev.obj.get("metadata") or {}
            if md.get("namespace") != self.ns:
                return
        self.q.put(ev)

    def close(self):
        self.closed = True
        self.q.put(None)


class Sim:
    """The simulator: store + registry + PKI + HTTPS server."""

    def __init__(self, workdir, sa_key_type="rsa", history_size=10000, bookmark_interval=60.0,
                 compaction_interval=300.0, log_requests=False, profile="modern", kubelet_delay=1.0):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.registry = Registry()
        self.store = Store(self.registry, history_size=history_size)
        self.pki = PKI(os.path.join(workdir, "pki"), sa_key_type=sa_key_type)
        self.counters = Counters()
        self.faults = Faults()
        self.controllers = None
        self.profile = profile  # also selects the served versions (Registry.profile)
        self.kubelet_delay = kubelet_delay
        self.bookmark_interval = bookmark_interval
        self.compaction_interval = compaction_interval
        self.log_requests = log_requests
        self.down_nodes = self.store.down_nodes
        self.watch_cut_after = None
        self.watch_expire_next = False
        self.watch_expire_rate = 0.0      # every watch answered 410 with this probability (/_sim/watch/expire)
        self.continue_expire = "off"      # off | next | every: continue tokens answered 410 (/_sim/continue/expire)
        self.page_cap = 0                 # >0: a paged list returns at most this many items (/_sim/list/page-cap)
        self.down_until = 0.0             # /_sim/restart downSeconds: connections refused until then
        self.chaos_rng = random.Random(4321)
        self.writes = WriteLog()
        self.httpd = None
        self.port = None
        self._conns = set()
        self._conns_lock = threading.Lock()
        self._stop = threading.Event()
        self.crd_establish_delay = 0.05  # 0: a CRD is Established in its create response (in-process tests)
        self.store.add_prepare_hook("apiextensions.k8s.io/customresourcedefinitions", self._crd_prepare)
        self.store.add_prepare_hook("namespaces", self._ns_prepare)
        self.store.add_prepare_hook("apps/daemonsets", self._ds_prepare)
        self.store.add_commit_hook(self._crd_commit)
        for res, obj in rbac.bootstrap_objects():
            self.store.create(res, obj)
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.store.create("namespaces", {"metadata": {"name": ns}})
        self.store.create("serviceaccounts", {"metadata": {"name": "default", "namespace": "default"}})

    @property
    def profile(self):
        """"modern" (kube-apiserver 1.26) or "legacy" (1.19): served versions, defaults, messages."""
        return self.registry.profile

    @profile.setter
    def profile(self, value):
        changed = self.registry.profile != value
        self.registry.profile = value
        if changed and getattr(self, "store", None) is not None:
            for ns in self.store.list("namespaces"):
                self.store.mutate("namespaces", "", ns["metadata"]["name"], self._ns_label)

    def _ns_label(self, obj):
        """1.21+ (modern) sets label kubernetes.io/metadata.name = name on every namespace write; 1.19 does not."""
        md = obj.setdefault("metadata", {})
        labels = dict(md.get("labels") or {})
        if self.modern:
            labels[NS_NAME_LABEL] = md.get("name", "")
        elif labels.get(NS_NAME_LABEL) == md.get("name"):
            labels.pop(NS_NAME_LABEL)
        if labels:
            md["labels"] = labels
        else:
            md.pop("labels", None)

    @staticmethod
    def _ds_prepare(op, obj, old):
        """The DaemonSet strategy: annotation deprecated.daemonset.template.generation follows the generation
        whenever the template changes."""
        if op != "update" or old is None:
            return
        if (obj.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
            md = obj.setdefault("metadata", {})
            gen = int(old["metadata"].get("generation") or 1) + 1
            md["annotations"] = dict(md.get("annotations") or {}, **{DS_TEMPLATE_GENERATION: str(gen)})

    def _ns_prepare(self, op, obj, old):
        if self.modern:
            self._ns_label(obj)

    @property
    def modern(self):
        return self.registry.profile != "legacy"

    # ---------------------------------------------------------------- CRDs
    def _crd_prepare(self, op, obj, old):
        spec = obj.get("spec") or {}
        if op == "update/status":
            return
        if isinstance(spec, dict):
            spec.setdefault("conversion", {"strategy": "None"})
        st = obj["status"] if isinstance(obj.get("status"), dict) else {}
        obj["status"] = st
        stored = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
        sv = list(st.get("storedVersions") or [])
        for v in stored:
            if v not in sv:
                sv.append(v)
        st["storedVersions"] = sv
        if op == "create" and self.crd_establish_delay > 0:
            # as the real create response: names not yet accepted, no conditions; the naming and establishing
            # controllers follow within ~0.1 s (_crd_commit schedules _crd_establish)
            st["acceptedNames"] = {"plural": "", "kind": ""}
            st["conditions"] = None
            return
        if not obj["metadata"].get("deletionTimestamp"):
            self._crd_accept(obj)

    @staticmethod
    def _crd_accept(obj):
        """NamesAccepted + Established (what the naming and establishing controllers write)."""
        names = (obj.get("spec") or {}).get("names") or {}
        st = obj.setdefault("status", {})
        accepted = {"plural": names.get("plural", ""), "singular": names.get("singular") or names.get("kind", "").lower(),
                    "kind": names.get("kind", ""), "listKind": names.get("listKind") or names.get("kind", "") + "List"}
        for f in ("shortNames", "categories"):
            if names.get(f):
                accepted[f] = names[f]
        st["acceptedNames"] = accepted
        now = now_rfc3339()
        old = {c.get("type"): c for c in st.get("conditions") or []}
        conds = [old.get("NamesAccepted") or {
            "type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts",
            "message": "no conflicts found"}, old.get("Established") or {
            "type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted"}]
        st["conditions"] = conds + [c for t, c in old.items() if t not in ("NamesAccepted", "Established")]

    def _crd_establish(self, name, uid):
        def fn(obj):
            if obj["metadata"].get("uid") != uid or obj["metadata"].get("deletionTimestamp"):
                return False
            self._crd_accept(obj)
            return True
        if not self._stop.is_set():
            self.store.mutate("apiextensions.k8s.io/customresourcedefinitions", "", name, fn, subresource="status")

    def _crd_commit(self, ev):
        if ev.res != "apiextensions.k8s.io/customresourcedefinitions":
            return
        spec = ev.obj.get("spec") or {}
        names = spec.get("names") or {}
        key = spec.get("group", "") + "/" + names.get("plural", "")
        if ev.type == "DELETED":
            self.registry.remove(key)
            return
        established = any(c.get("type") == "Established" and c.get("status") == "True"
                          for c in (ev.obj.get("status") or {}).get("conditions") or [])
        if not established and self.registry.by_key(key) is None:
            if ev.type == "ADDED":
                t = threading.Timer(self.crd_establish_delay, self._crd_establish,
                                    (ev.obj["metadata"]["name"], ev.obj["metadata"].get("uid")))
                t.daemon = True
                t.start()
            return  # CustomResources are served once the CRD is Established (404 before)
        served = [v for v in spec.get("versions") or [] if v.get("served", True)]
        if not served:
            self.registry.remove(key)
            return
        storage = next((v for v in spec.get("versions") or [] if v.get("storage")), served[0])
        # preferred version: kube-aware version priority; keep declaration order with storage first is close enough
        vers = [v["name"] for v in served]
        subres = {}
        sr = storage.get("subresources") or {}
        if "status" in sr:
            subres["status"] = {"kind": names.get("kind", ""), "verbs": list(SUB_VERBS)}
        if "scale" in sr:
            subres["scale"] = {"kind": "Scale", "verbs": list(SUB_VERBS), "group": "autoscaling", "version": "v1"}
        info = ResourceInfo(spec.get("group", ""), storage["name"], names.get("kind", ""), names.get("plural", ""),
                            singular=names.get("singular") or names.get("kind", "").lower(),
                            namespaced=spec.get("scope") == "Namespaced", short_names=names.get("shortNames"),
                            verbs=["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
                            subresources=subres, list_kind=names.get("listKind"),
                            printer_columns=list(storage.get("additionalPrinterColumns") or []) or [
                                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
                            categories=names.get("categories"), versions=vers, has_generation=True,
                            status_subresource="status" in sr, is_crd=True, crd_name=ev.obj["metadata"]["name"],
                            schemas={v["name"]: (v.get("schema") or {}).get("openAPIV3Schema") for v in served})
        info.version_columns = {v["name"]: v.get("additionalPrinterColumns") for v in served}
        self.registry.add(info)

    # ---------------------------------------------------------------- lifecycle
    def start_server(self, port=0):
        pki = self.pki
        d = os.path.join(self.workdir, "serving")
        os.makedirs(d, exist_ok=True)
        cert, key = pki.issue_cert("kube-apiserver", (), server_sans=["IP:127.0.0.1", "DNS:localhost",
                                                                       "DNS:kubernetes", "DNS:kubernetes.default",
                                                                       "DNS:kubernetes.default.svc"], client=False)
        cert_path, key_path = os.path.join(d, "apiserver.crt"), os.path.join(d, "apiserver.key")
        with open(cert_path, "w") as f:
            f.write(cert)
        with open(key_path, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(key)
        self.serving_cert_path = cert_path
        ca_bundle = os.path.join(d, "client-ca.crt")
        self._write_client_ca(ca_bundle)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_path, key_path)
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(ca_bundle)
        ctx.set_alpn_protocols(["http/1.1"])
        self.ssl_ctx = ctx
        sim = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

            def verify_request(self, request, client_address):
                return time.time() >= sim.down_until  # a restarting apiserver: connection closed at once

            def get_request(self):
                sock, addr = self.socket.accept()
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                return sock, addr

            def process_request_thread(self, request, client_address):
                # TLS handshake in the connection's own thread so a slow client never blocks accept()
                try:
                    request.settimeout(30)
                    tls = sim.ssl_ctx.wrap_socket(request, server_side=True)
                    tls.settimeout(None)
                except Exception:  # noqa: BLE001
                    try:
                        request.close()
                    except OSError:
                        pass
                    return
                with sim._conns_lock:
                    sim._conns.add(tls)
                try:
                    super().process_request_thread(tls, client_address)
                finally:
                    with sim._conns_lock:
                        sim._conns.discard(tls)

            def handle_error(self, request, client_address):
                pass

        self.httpd = Server(("127.0.0.1", port), make_handler(self))
        self.port = self.httpd.server_address[1]
        self.pki.on_rebuild(lambda _p: self._write_client_ca(ca_bundle, reload=True))
        threading.Thread(target=self.httpd.serve_forever, name="httpd", daemon=True).start()
        threading.Thread(target=self._compactor, name="compactor", daemon=True).start()
        return self.port

    def _write_client_ca(self, path, reload=False):
        with open(path, "w") as f:
            f.write(self.pki.ca_cert_pem)
            for old in self.pki.old_ca_cert_pems:
                # client certs signed by old CAs stay accepted (like an apiserver started with both in its bundle)
                f.write(old)
        if reload:
            try:
                self.ssl_ctx.load_verify_locations(path)
            except Exception:  # noqa: BLE001
                pass

    def _compactor(self):
        last = self.store.current_rv()
        while not self._stop.wait(self.compaction_interval):
            cur = self.store.current_rv()
            self.store.compact(last)
            last = cur

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def write_kubeconfig(self, path, user="kubernetes-admin", groups=("system:masters",)):
        cert, key = self.pki.issue_cert(user, groups)
        kc = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "apisim", "cluster": {
                "server": self.url,
                "certificate-authority-data": base64.b64encode(self.pki.ca_cert_pem.encode()).decode()}}],
            "users": [{"name": user, "user": {
                "client-certificate-data": base64.b64encode(cert.encode()).decode(),
                "client-key-data": base64.b64encode(key.encode()).decode()}}],
            "contexts": [{"name": "apisim", "context": {"cluster": "apisim", "user": user}}],
            "current-context": "apisim", "preferences": {},
        }
        import yaml
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            yaml.safe_dump(kc, f, default_flow_style=False)
        os.replace(tmp, path)
        base = os.path.splitext(path)[0]
        for suffix, data in (("-ca.crt", self.pki.ca_cert_pem), ("-admin.crt", cert), ("-admin.key", key)):
            with open(base + suffix, "w") as f:
                if suffix.endswith(".key"):
                    os.fchmod(f.fileno(), 0o600)
                f.write(data)

    def drop_connections(self):
        for w in self.store.all_watchers():
            w.close()
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restart(self):
        """Simulated apiserver restart: every connection dropped, watch cache forgotten, objects kept."""
        self.drop_connections()
        self.store.forget_history()

    def shutdown(self):
        self._stop.set()
        if self.controllers is not None:
            try:
                self.controllers.stop()
            except Exception:  # noqa: BLE001
                pass
        self.drop_connections()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        self.store.stop()

    # ---------------------------------------------------------------- rendering
    def self_link(self, info, version, ns, name=None, sub=None):
        base = ("/api/" + version) if not info.group else "/apis/%s/%s" % (info.group, version)
        if info.namespaced and ns:
            base += "/namespaces/" + ns
        base += "/" + info.plural
        if name:
            base += "/" + name
        if sub:
            base += "/" + sub
        return base

    def list_meta(self, info, version, ns, rv):
        meta = {"resourceVersion": str(rv)}
        if not self.modern:
            meta = {"selfLink": self.self_link(info, version, ns), **meta}
        return meta

    def render_meta(self, info, version, obj):
        md = obj.get("metadata") or {}
        out = {}
        for k in _META_ORDER:
            if k == "selfLink":
                if not self.modern:  # 1.20+ no longer sets selfLink
                    out["selfLink"] = self.self_link(info, version, md.get("namespace"), md.get("name"))
            elif k in md:
                out[k] = md[k]
        for k, v in md.items():
            if k not in out:
                out[k] = v
        if "creationTimestamp" not in out:
            out["creationTimestamp"] = None
        return out

    def render(self, info, version, obj, with_kind=True):
        if info.key == "events":
            obj = evmod.core_out(obj)
        elif info.key == "events.k8s.io/events":
            obj = evmod.from_core(obj)
        zero = ZERO_STATUS.get(info.key, ()) + (ZERO_STATUS_MODERN.get(info.key, ()) if self.modern else ())
        if zero and isinstance(obj.get("status"), dict) and any(f not in obj["status"] for f in zero):
            obj = dict(obj, status=dict({f: 0 for f in zero}, **obj["status"]))
        out = {}
        if with_kind:
            out["kind"] = info.kind
            out["apiVersion"] = info.api_version(version)
        out["metadata"] = self.render_meta(info, version, obj)
        for k, v in obj.items():
            if k not in ("kind", "apiVersion", "metadata"):
                out[k] = v
        return out


def _wants_table(accept):
    if not accept or "as=Table" not in accept:
        return None
    for part in accept.split(","):
        params = [p.strip() for p in part.split(";")]
        if "as=Table" in params and "g=meta.k8s.io" in params:
            for p in params:
                if p.startswith("v="):
                    return p[2:]
            return "v1"
    return None


def make_handler(sim):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "apisim"
        sys_version = ""

        def log_message(self, fmt, *args):  # noqa: D401
            if sim.log_requests:
                import sys
                sys.stderr.write("apisim: %s\n" % (fmt % args))

        def send_response(self, code, message=None):
            self.log_request(code)
            self.send_response_only(code, message)
            self.send_header("Date", self.date_time_string())

        # ------------------------------------------------------------ plumbing
        def do_GET(self):
            self._handle("GET")

        def do_POST(self):
            self._handle("POST")

        def do_PUT(self):
            self._handle("PUT")

        def do_PATCH(self):
            self._handle("PATCH")

        def do_DELETE(self):
            self._handle("DELETE")

        def do_HEAD(self):
            self._handle("HEAD")

        def _read_body(self):
            te = (self.headers.get("Transfer-Encoding") or "").lower()
            if te == "chunked":
                chunks = []
                while True:
                    line = self.rfile.readline()
                    n = int(line.strip().split(b";")[0] or b"0", 16)
                    if n == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    chunks.append(self.rfile.read(n))
                    self.rfile.readline()
                return b"".join(chunks)
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n > 0 else b""

        def _pretty(self):
            ua = self.headers.get("User-Agent") or ""
            if self.query.get("pretty") in ("true", "1"):
                return True
            return ua.startswith("curl") or ua.startswith("Wget") or ua.startswith("Mozilla/5.0")

        def send_json(self, code, obj, headers=None, pretty=None, content_type="application/json"):
            if 200 <= code < 300 and self._verb in WRITE_VERBS and self._res_key not in ("", "_sim") and \
                    self._res_key not in VIRTUAL:
                sim.writes.record(self._verb, self._res_key, self._sub, getattr(self, "ns", ""),
                                  getattr(self, "name", ""), getattr(getattr(self, "user", None), "name", ""), code,
                                  obj)
            if pretty is None:
                pretty = self._pretty()
            if pretty:
                body = json.dumps(obj, indent=2, ensure_ascii=False).encode()
            else:
                body = (json.dumps(obj, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
            self.send_response(code)
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Content-Type", content_type)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self._code = code

        def send_error_status(self, err):
            headers = dict(err.headers)
            if err.code == 403 or err.code == 401:
                headers.setdefault("X-Content-Type-Options", "nosniff")
            self.send_json(err.code, err.status(), headers=headers,
                           pretty=True if getattr(err, "pretty", False) else None)

        def _handle(self, method):
            self._code = 0
            self._verb = method.lower()
            self._res_key = ""
            self._sub = ""
            self.warnings = []
            parsed = urllib.parse.urlsplit(self.path)
            self.url_path = parsed.path
            self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query, keep_blank_values=True).items()}
            try:
                self.body = self._read_body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
                self.user = auth.impersonate(sim, self, auth.authenticate(sim, self))
                self.route(method)
            except errors.ApiError as e:
                if e.code == 429 and self._res_key == "pods" and self._sub == "eviction" and self.warnings:
                    for w in self.warnings:
                        e.headers.setdefault("Warning", w)
                self.send_error_status(e)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
                self.close_connection = True
                self._code = self._code or 499
            except Exception as e:  # noqa: BLE001
                import traceback
                traceback.print_exc()
                try:
                    self.send_error_status(errors.internal_error(repr(e)))
                except Exception:  # noqa: BLE001
                    self.close_connection = True
            finally:
                sim.counters.add(self._verb, self._res_key, self._sub, self._code or 0)

        # ------------------------------------------------------------ routing
        def route(self, method):
            path = self.url_path.rstrip("/") or "/"
            if path.startswith("/_sim"):
                self._res_key = "_sim"
                if not self.user.is_admin:
                    raise rbac.forbidden_error(self.user, rbac.Attrs(method.lower(), False, path=path))
                from . import simcontrol
                return simcontrol.handle(sim, self, method, path)
            parts = [urllib.parse.unquote(p) for p in path.split("/") if p]
            if parts and parts[0] == "api" and len(parts) >= 2:
                group, version, rest = "", parts[1], parts[2:]
            elif parts and parts[0] == "apis" and len(parts) >= 3:
                group, version, rest = parts[1], parts[2], parts[3:]
            else:
                return self.non_resource(method, path)
            if not rest:
                return self.non_resource(method, path)
            watch_path = False
            if rest[0] == "watch":
                watch_path = True
                rest = rest[1:]
            ns, name, sub = "", "", ""
            if len(rest) >= 3 and rest[0] == "namespaces":
                ns, plural = rest[1], rest[2]
                name = rest[3] if len(rest) > 3 else ""
                sub = rest[4] if len(rest) > 4 else ""
                if len(rest) > 5:
                    raise errors.generic_not_found()
            else:
                plural = rest[0]
                name = rest[1] if len(rest) > 1 else ""
                sub = rest[2] if len(rest) > 2 else ""
                if len(rest) > 3:
                    raise errors.generic_not_found()
            info = sim.registry.lookup(group, version, plural)
            if info is None:
                if group == "policy" and version == "v1beta1" and plural == "eviction":
                    pass
                self._res_key = ((group + "/") if group else "") + plural
                raise errors.generic_not_found()
            if info.namespaced is False and ns and plural != "namespaces":
                raise errors.generic_not_found()
            if sub and sub not in info.subresources:
                raise errors.generic_not_found()
            self._res_key, self._sub = info.key, sub
            watch = watch_path or self.query.get("watch") in ("1", "true", "True")
            if method in ("GET", "HEAD"):
                verb = "get" if name else ("watch" if watch else "list")
            elif method == "POST":
                verb = "create"
                if name and not sub:
                    raise errors.method_not_allowed('the server does not allow this method on the requested resource')
            elif method == "PUT":
                verb = "update"
            elif method == "PATCH":
                verb = "patch"
            elif method == "DELETE":
                verb = "delete" if name else "deletecollection"
            else:
                raise errors.method_not_allowed("method not allowed")
            self._verb = verb
            allowed = info.subresources[sub]["verbs"] if sub else info.verbs
            if verb == "watch" and "watch" not in allowed or (verb not in ("watch",) and verb not in allowed):
                raise errors.method_not_allowed('the server does not allow this method on the requested resource')
            attrs = rbac.Attrs(verb, True, group, version, plural, sub, name, ns, path)
            if not rbac.authorize(sim.store, self.user, attrs):
                raise rbac.forbidden_error(self.user, attrs)
            if verb in ("create", "update", "patch") and info.key == "certificates.k8s.io/certificatesigningrequests" \
                    and sub == "approval":
                self._check_signer_approval(name)
            latency, ferr = sim.faults.match(verb, info.key, sub)
            if latency:
                time.sleep(latency)
            if ferr is not None:
                raise ferr
            self.info, self.version, self.ns, self.name, self.sub = info, version, ns, name, sub
            getattr(self, "do_" + verb)()

        def _check_signer_approval(self, name):
            csr = sim.store.get_ref("certificates.k8s.io/certificatesigningrequests", "", name)
            if csr is None:
                return
            signer = (csr.get("spec") or {}).get("signerName", "")
            domain = signer.split("/", 1)[0]
            for rn in (signer, domain + "/*"):
                a = rbac.Attrs("approve", True, "certificates.k8s.io", "v1", "signers", "", rn, "", "")
                if rbac.authorize(sim.store, self.user, a):
                    return
            # approval admission plugin (certificates/approval): Forbidden with this text
            raise errors.forbidden(("certificates.k8s.io", "certificatesigningrequests"), name,
                                   'user not permitted to approve requests with signerName "%s"' % signer)

        # ------------------------------------------------------------ non-resource
        def send_openapi_v2(self):
            """A valid but empty OpenAPI v2 document (no definitions).  kubectl downloads it for
            client-side validation and skips kinds the document does not describe, so `kubectl
            apply/create` work without --validate=false; no schema is enforced (documented)."""
            accept = self.headers.get("Accept", "")
            if "protobuf" in accept:
                body = b""  # an empty openapi_v2.Document message
                ctype = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"  # as kube-openapi answers
            else:
                body = json.dumps({"swagger": "2.0", "info": {"title": "Kubernetes", "version": VERSION_INFO[
                    "gitVersion"]}, "paths": {}, "definitions": {}}, separators=(",", ":")).encode()
                ctype = "application/json"
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self._code = 200

        def non_resource(self, method, path):
            verb = method.lower() if method != "HEAD" else "get"
            self._verb = verb
            attrs = rbac.Attrs(verb, False, path=path)
            public = path in ("/version", "/healthz", "/livez", "/readyz")
            if not rbac.authorize(sim.store, self.user, attrs):
                raise rbac.forbidden_error(self.user, attrs)
            if method not in ("GET", "HEAD"):
                raise errors.method_not_allowed("the server does not allow this method on the requested resource")
            latency, ferr = sim.faults.match(verb, path, "")
            if latency:
                time.sleep(latency)
            if ferr is not None:
                raise ferr
            _ = public
            if path == "/version":
                return self.send_json(200, PROFILE_VERSION_INFO.get(sim.profile, VERSION_INFO), pretty=True)
            if path in ("/healthz", "/livez", "/readyz"):
                body = b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self._code = 200
                return
            if path == "/openapi/v2":
                return self.send_openapi_v2()
            if path == "/api":
                return self.send_json(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:%d" % sim.port}]})
            if path == "/apis":
                groups = []
                for g, vs in sim.registry.groups():
                    gv = [{"groupVersion": "%s/%s" % (g, v), "version": v} for v in vs]
                    groups.append({"name": g, "versions": gv, "preferredVersion": gv[0]})
                return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
            parts = [p for p in path.split("/") if p]
            if parts[0] == "api" and len(parts) == 2 and parts[1] == "v1":
                return self.send_json(200, self.resource_list("", "v1"))
            if parts[0] == "apis" and len(parts) == 2:
                for g, vs in sim.registry.groups():
                    if g == parts[1]:
                        gv = [{"groupVersion": "%s/%s" % (g, v), "version": v} for v in vs]
                        return self.send_json(200, {"kind": "APIGroup", "apiVersion": "v1", "name": g,
                                                    "versions": gv, "preferredVersion": gv[0]})
                raise errors.generic_not_found()
            if parts[0] == "apis" and len(parts) == 3:
                if not sim.registry.resources_for(parts[1], parts[2]):
                    raise errors.generic_not_found()
                return self.send_json(200, self.resource_list(parts[1], parts[2]))
            if path == "/openid/v1/jwks":
                return self.send_json(200, sim.pki.jwks(), headers={"Cache-Control": "public, max-age=3600"},
                                      content_type="application/jwk-set+json")
            if path == "/.well-known/openid-configuration":
                from .pki import ISSUER
                return self.send_json(200, {"issuer": ISSUER, "jwks_uri": ISSUER + "/openid/v1/jwks",
                                            "response_types_supported": ["id_token"],
                                            "subject_types_supported": ["public"],
                                            "id_token_signing_alg_values_supported": [sim.pki.current_sa_key.alg]},
                                      headers={"Cache-Control": "public, max-age=3600"})
            raise errors.generic_not_found()

        def resource_list(self, group, version):
            out = []
            for info in sim.registry.resources_for(group, version):
                r = {"name": info.plural, "singularName": info.singular, "namespaced": info.namespaced,
                     "kind": info.kind, "verbs": list(info.verbs)}
                if info.short_names:
                    r["shortNames"] = list(info.short_names)
                if info.categories:
                    r["categories"] = list(info.categories)
                out.append(r)
                for sub, s in sorted(info.subresources.items()):
                    sr = {"name": info.plural + "/" + sub, "singularName": "", "namespaced": info.namespaced}
                    if s.get("group"):
                        sr["group"] = s["group"]
                        sr["version"] = s["version"]
                        if info.key == "pods" and sub == "eviction":
                            sr["version"] = sim.registry.eviction_version()
                    sr["kind"] = s["kind"]
                    sr["verbs"] = list(s["verbs"])
                    out.append(sr)
            gv = (group + "/" + version) if group else version
            d = {"kind": "APIResourceList", "groupVersion": gv, "resources": out}
            if group:
                d = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}
            return d

        # ------------------------------------------------------------ helpers
        def _parse_body(self):
            ct = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
            if ct == "application/vnd.kubernetes.protobuf":
                from .resources import decode_protobuf
                try:
                    obj = decode_protobuf(self.body)
                except (ValueError, IndexError) as e:
                    raise errors.unsupported_media_type(
                        "the body of the request was in an unknown format - accepted media types include: "
                        "application/json, application/yaml (%s)" % e)
                return obj
            text = self.body.decode("utf-8", errors="replace")
            try:
                if ct in ("application/yaml", "application/x-yaml", "text/yaml"):
                    import yaml
                    obj = yaml.safe_load(text)
                else:
                    obj = json.loads(text)
            except Exception as e:  # noqa: BLE001
                raise errors.bad_request("the object provided is unrecognized: %s" % e)
            if not isinstance(obj, dict):
                raise errors.bad_request("the object provided is unrecognized (must be of type %s)" % self.info.kind)
            return obj

        def _ok(self, code, obj, extra_headers=None):
            headers = {}
            for w in self.warnings:
                headers["Warning"] = w
            headers.update(extra_headers or {})
            self.send_json(code, obj, headers=headers)

        def _out(self, obj):
            info = self.info
            tv = _wants_table(self.headers.get("Accept"))
            if tv is not None and self.sub == "":
                return self._table([obj], {"resourceVersion": obj["metadata"].get("resourceVersion", "")}, tv)
            return sim.render(info, self.version, obj)

        def _table(self, objs, list_meta, tv):
            info, version = self.info, self.version
            include = self.query.get("includeObject", "Metadata")
            t = tablemod.to_table(info, objs, list_meta, lambda o: sim.render_meta(info, version, o), include, tv,
                                  render_full=lambda o: sim.render(info, version, o))
            return t

        def _check_namespace_for_create(self, ns):
            if not self.info.namespaced:
                return
            nso = sim.store.get_ref("namespaces", "", ns)
            if nso is None:
                raise errors.not_found(sim.registry.by_key("namespaces"), ns)
            if nso["metadata"].get("deletionTimestamp") or (nso.get("status") or {}).get("phase") == "Terminating":
                raise errors.forbidden(self.info, "", "unable to create new content in namespace %s because it is "
                                                      "being terminated" % ns)

        def _dry_run(self):
            return self.query.get("dryRun") == "All"

        # ------------------------------------------------------------ GET / LIST
        def do_get(self):
            if self.sub == "log":
                body = b""
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "0")
                self.end_headers()
                self._code = 200
                return body
            obj = sim.store.get_ref(self.info.key, self.ns, self.name)
            if obj is None:
                raise errors.not_found(self.info, self.name)
            return self._ok(200, self._out(obj))

        def do_list(self):
            info, q = self.info, self.query
            if q.get("resourceVersionMatch") and not q.get("resourceVersion"):
                raise errors.invalid("ListOptions", "", [errors.field_forbidden(
                    "resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided")],
                    group="meta.k8s.io")
            pred = selectors.make_predicate(info, q.get("labelSelector"), q.get("fieldSelector"), sim.modern)
            try:
                limit = int(q.get("limit") or 0)
            except ValueError:
                limit = 0
            start, token_rv = None, None
            cont = q.get("continue")
            if cont:
                token_rv, start = decode_continue(cont)
                forced = sim.continue_expire != "off" and token_rv != -1
                if forced and sim.continue_expire == "next":
                    sim.continue_expire = "off"
                if token_rv != -1 and (token_rv < sim.store.compact_rv or forced):
                    raise errors.gone(
                        "The provided continue parameter is too old to display a consistent list result. You can "
                        "start a new list without the continue parameter, or use the continue token in this response "
                        "to retrieve the remainder of the results. Continuing with the provided token results in an "
                        "inconsistent list - objects that were created, modified, or deleted between the time the "
                        "first chunk was returned and now may show up in the list.", encode_continue(-1, start))
            if sim.page_cap > 0 and limit > sim.page_cap:
                limit = sim.page_cap  # the server may return fewer items than asked (a fault control)
            refs, nxt, remaining, rv = sim.store.list_page(info.key, self.ns or None, start, limit, pred)
            list_rv = token_rv if token_rv not in (None, -1) else rv
            meta = sim.list_meta(info, self.version, self.ns, list_rv)
            if nxt is not None:
                meta["continue"] = encode_continue(list_rv, nxt)
                if remaining is not None and pred is None:
                    meta["remainingItemCount"] = remaining
            tv = _wants_table(self.headers.get("Accept"))
            if tv is not None:
                return self._ok(200, self._table(refs, meta, tv))
            items = [sim.render(info, self.version, o, with_kind=False) for o in refs]
            return self._ok(200, {"kind": info.list_kind, "apiVersion": info.api_version(self.version),
                                  "metadata": meta, "items": items})

        # ------------------------------------------------------------ WATCH
        def do_watch(self):
            info, q = self.info, self.query
            if q.get("resourceVersionMatch"):
                causes = [errors.field_forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden for watch")]
                if not q.get("resourceVersion"):
                    causes.append(errors.field_forbidden(
                        "resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is provided"))
                raise errors.invalid("ListOptions", "", causes, group="meta.k8s.io")
            pred = selectors.make_predicate(info, q.get("labelSelector"), q.get("fieldSelector"), sim.modern)
            rv_text = q.get("resourceVersion", "")
            try:
                from_rv = None if rv_text in ("", "0") else int(rv_text)
            except ValueError:
                raise errors.bad_request('invalid resource version: "%s"' % rv_text)
            try:
                timeout = float(q.get("timeoutSeconds") or 0)
            except ValueError:
                timeout = 0
            if timeout <= 0:
                timeout = 1800.0 * (1 + random.random())
            bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
            tv = _wants_table(self.headers.get("Accept"))
            watcher = Watcher(self.ns)
            expired = None
            forced_410 = sim.watch_expire_rate > 0 and sim.chaos_rng.random() < sim.watch_expire_rate
            if sim.watch_expire_next or forced_410:
                sim.watch_expire_next = False
                expired = "too old resource version: %s (%d)" % (rv_text or "0", sim.store.current_rv())
                kind, payload = "none", []
            else:
                kind, payload, _cur = sim.store.watch_register(info.key, watcher, from_rv)
                if kind == "expired":
                    expired = "too old resource version: %d (%d)" % (from_rv, payload)
            self.send_response(200)
            self.send_header("Cache-Control", "no-cache, private")
            self.send_header("Content-Type", "application/json")
            for w in self.warnings:
                self.send_header("Warning", w)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._code = 200
            self.close_connection = False
            sent = [0]

            def write_event(typ, obj_out):
                line = json.dumps({"type": typ, "object": obj_out}, separators=(",", ":"), ensure_ascii=False)
                data = line.encode() + b"\n"
                self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
                self.wfile.flush()
                sent[0] += 1

            def render(o):
                if tv is not None:
                    return self._table([o], {"resourceVersion": o["metadata"].get("resourceVersion", "")}, tv)
                return sim.render(info, self.version, o)

            cut_after = sim.watch_cut_after
            try:
                if expired is not None:
                    write_event("ERROR", errors.gone(expired).status())
                    return self._end_chunks()
                deadline = time.time() + timeout
                if kind == "snapshot":
                    for o in payload:
                        if pred is None or pred(o):
                            write_event("ADDED", render(o))
                            if cut_after is not None and sent[0] >= cut_after:
                                return self._cut()
                else:
                    for ev in payload:
                        if self._send_ev(ev, pred, write_event, render) and cut_after is not None and \
                                sent[0] >= cut_after:
                            return self._cut()
                next_bm = time.time() + sim.bookmark_interval
                end_bms = [deadline - 2.0, deadline - 0.7] if timeout > 5 else []
                while True:
                    now = time.time()
                    if now >= deadline or watcher.closed:
                        break
                    wake = deadline
                    if bookmarks:
                        wake = min([wake, next_bm] + [t for t in end_bms if t > now])
                    try:
                        ev = watcher.q.get(timeout=max(0.01, min(wake - now, 1.0)))
                    except queue.Empty:
                        ev = False
                    if ev is None:
                        if watcher.closed:
                            return self._cut()
                        continue
                    if ev is not False:
                        if self._send_ev(ev, pred, write_event, render) and cut_after is not None and \
                                sent[0] >= cut_after:
                            return self._cut()
                        continue
                    now = time.time()
                    if bookmarks:
                        due = [t for t in end_bms if t <= now]
                        if now >= next_bm or due:
                            end_bms = [t for t in end_bms if t > now]
                            next_bm = now + sim.bookmark_interval
                            write_event("BOOKMARK", {"kind": info.kind, "apiVersion": info.api_version(self.version),
                                                     "metadata": {"resourceVersion": str(sim.store.current_rv()),
                                                                  "creationTimestamp": None}})
                self._end_chunks()
            finally:
                sim.store.watch_unregister(info.key, watcher)

        def _send_ev(self, ev, pred, write_event, render):
            typ, obj = ev.type, ev.obj
            if pred is not None:
                cur = pred(obj)
                prev = pred(ev.prev) if ev.prev is not None else False
                if typ == "ADDED":
                    if not cur:
                        return False
                elif typ == "MODIFIED":
                    if cur and not prev:
                        typ = "ADDED"
                    elif prev and not cur:
                        # the watch cache: the previous content, with the event's resourceVersion
                        typ = "DELETED"
                        obj = dict(ev.prev, metadata=dict(ev.prev.get("metadata") or {}, resourceVersion=(
                            obj.get("metadata") or {}).get("resourceVersion")))
                    elif not cur:
                        return False
                elif typ == "DELETED":
                    if not (cur or prev):
                        return False
            write_event(typ, render(obj))
            return True

        def _end_chunks(self):
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                pass
            self.close_connection = True

        def _cut(self):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        # ------------------------------------------------------------ CREATE
        def do_create(self):
            info, sub = self.info, self.sub
            body = self._parse_body()
            if info.key in VIRTUAL:
                return self._virtual_create(body)
            if sub:
                return self._sub_create(body)
            self._validate_kind(body)
            md = body.setdefault("metadata", {})
            if not isinstance(md, dict):
                raise errors.bad_request("metadata must be an object")
            if info.namespaced:
                if md.get("namespace") and md["namespace"] != self.ns:
                    raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                             "on the request")
                md["namespace"] = self.ns
            else:
                md.pop("namespace", None)
            body = self._decode(body)
            self._validate(body, create=True)
            self._check_namespace_for_create(self.ns)
            self._admit_create(body)
            obj = sim.store.create(info.key, body, dry_run=self._dry_run())
            return self._ok(201, self._out(obj))

        def _validate_kind(self, body):
            info = self.info
            av, kind = body.get("apiVersion"), body.get("kind")
            if kind and kind != info.kind:
                raise errors.bad_request("the API version in the data (%s) does not match the expected API version "
                                         "(%s)" % (av, info.api_version(self.version)) if av and av !=
                                         info.api_version(self.version) else
                                         "the kind in the data (%s) does not match the expected kind (%s)" % (
                                             kind, info.kind))

        def _validate(self, body, create):
            info = self.info
            md = body.get("metadata") or {}
            name = md.get("name") or ""
            causes = []
            if name:
                if info.key == "namespaces" or info.key == "serviceaccounts" and False:
                    if not _DNS1123_LABEL.match(name) or len(name) > 63:
                        causes.append(errors.field_invalid("metadata.name", name, dns_msg(LABEL_MSG, sim)))
                elif info.key not in ("rbac.authorization.k8s.io/roles", "rbac.authorization.k8s.io/clusterroles",
                                      "rbac.authorization.k8s.io/rolebindings",
                                      "rbac.authorization.k8s.io/clusterrolebindings"):
                    if not _DNS1123_SUB.match(name) or len(name) > 253:
                        causes.append(errors.field_invalid("metadata.name", name, dns_msg(SUB_MSG, sim)))
            elif not md.get("generateName"):
                causes.append(errors.field_required("metadata.name", "name or generateName is required"))
            if info.key in ("configmaps", "secrets"):
                for k in list((body.get("data") or {}).keys()) + list((body.get("stringData") or {}).keys()):
                    if not _CM_KEY.match(k) or len(k) > 253:
                        causes.append(errors.field_invalid("data[%s]" % k, k, CM_KEY_MSG))
            if info.key in ("events", "events.k8s.io/events"):
                # body is the core shape (see _decode); strict rules for events.k8s.io/v1 creates only
                strict = create and info.key != "events" and self.version != "v1beta1"
                evmod.validate_create(body, strict, sim.modern, causes)
            if info.key == "certificates.k8s.io/certificatesigningrequests":
                spec = body.get("spec") or {}
                if not spec.get("request"):
                    causes.append(errors.field_required("spec.request"))
                if not spec.get("signerName"):
                    causes.append(errors.field_required("spec.signerName"))
                if not spec.get("usages"):
                    causes.append(errors.field_required("spec.usages"))
            if info.key == "pods" and create:
                if not ((body.get("spec") or {}).get("containers")):
                    causes.append(errors.field_required("spec.containers"))
            if causes:
                raise errors.invalid(info.kind, name, causes)

        def _admit_create(self, body):
            info = self.info
            md = body["metadata"]
            if info.key == "certificates.k8s.io/certificatesigningrequests":
                spec = body.setdefault("spec", {})
                spec["username"] = self.user.name
                spec["groups"] = list(self.user.groups)
                if self.user.uid:
                    spec["uid"] = self.user.uid
                else:
                    spec.pop("uid", None)
                if self.user.extra:
                    spec["extra"] = self.user.extra
                else:
                    spec.pop("extra", None)
                body["status"] = {}
            elif info.key == "pods" and getattr(sim.controllers, "admit_pod", None) is not None:
                # the controllers' ServiceAccount admission knows the profile (legacy secret volume
                # vs. projected kube-api-access volume) and rejects a missing ServiceAccount
                body.setdefault("metadata", {}).setdefault("namespace", self.ns)
                sim.controllers.admit_pod(body)
                body["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
            elif info.key == "pods":
                spec = body.setdefault("spec", {})
                sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
                sao = sim.store.get_ref("serviceaccounts", self.ns, sa)
                automount = spec.get("automountServiceAccountToken")
                if automount is None and sao is not None:
                    automount = sao.get("automountServiceAccountToken")
                if automount is not False and not any(
                        (v.get("name") or "").startswith("kube-api-access-") for v in spec.get("volumes") or []):
                    vname = "kube-api-access-" + random_suffix()
                    spec.setdefault("volumes", []).append({"name": vname, "projected": {
                        "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                                    {"configMap": {"name": "kube-root-ca.crt", "items": [
                                        {"key": "ca.crt", "path": "ca.crt"}]}},
                                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                                        "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}],
                        "defaultMode": 420}})
                    for c in spec.get("containers") or []:
                        c.setdefault("volumeMounts", []).append({
                            "name": vname, "readOnly": True,
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
                tol = spec.setdefault("tolerations", [])
                for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
                    if not any(t.get("key") == key for t in tol):
                        tol.append({"key": key, "operator": "Exists", "effect": "NoExecute",
                                    "tolerationSeconds": 300})
                body["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
            elif info.key == "nodes":
                st = body.setdefault("status", {})
                body.setdefault("spec", {}).setdefault("taints", [{"key": "node.kubernetes.io/not-ready",
                                                                   "effect": "NoSchedule"}])
                st.setdefault("daemonEndpoints", {"kubeletEndpoint": {"Port": 0}})
            elif info.key == "apiextensions.k8s.io/customresourcedefinitions":
                spec = body.get("spec") or {}
                names = spec.get("names") or {}
                want = "%s.%s" % (names.get("plural", ""), spec.get("group", ""))
                if md.get("name") != want:
                    raise errors.invalid(info.kind, md.get("name", ""), [errors.field_invalid(
                        "metadata.name", md.get("name", ""), 'must be spec.names.plural+"."+spec.group')])
                body["status"] = {}
            elif info.is_crd:
                self._crd_defaults(body)

        def _crd_defaults(self, body):
            schema = (self.info.schemas or {}).get(self.version) or {}
            _apply_schema_defaults(body, schema)

        def _virtual_create(self, body):
            key = self.info.key
            if key == "authentication.k8s.io/tokenreviews":
                out = auth.token_review(sim, body)
                return self._ok(201, out)
            spec = body.get("spec") or {}
            if key == "authorization.k8s.io/selfsubjectrulesreviews":
                res, nonres = rbac.rules_for(sim.store, self.user, spec.get("namespace", ""))
                return self._ok(201, {"kind": "SelfSubjectRulesReview", "apiVersion": "authorization.k8s.io/v1",
                                      "metadata": {"creationTimestamp": None}, "spec": spec,
                                      "status": {"resourceRules": res, "nonResourceRules": nonres,
                                                 "incomplete": False}})
            if key == "authorization.k8s.io/selfsubjectaccessreviews":
                user = self.user
            else:
                user = auth.User(spec.get("user", ""), list(spec.get("groups") or []), spec.get("uid", ""))
            ra = spec.get("resourceAttributes")
            nra = spec.get("nonResourceAttributes")
            if ra:
                a = rbac.Attrs(ra.get("verb", ""), True, ra.get("group", ""), ra.get("version", ""),
                               ra.get("resource", ""), ra.get("subresource", ""), ra.get("name", ""),
                               ra.get("namespace", "") or (self.ns if key.endswith("localsubjectaccessreviews")
                                                           else ""))
            else:
                a = rbac.Attrs((nra or {}).get("verb", ""), False, path=(nra or {}).get("path", ""))
            allowed = rbac.authorize(sim.store, user, a)
            status = {"allowed": allowed}
            if allowed:
                status["reason"] = 'RBAC: allowed by ClusterRoleBinding' if not user.is_admin else ""
                if not status["reason"]:
                    status.pop("reason")
            out = {"kind": self.info.kind, "apiVersion": "authorization.k8s.io/v1",
                   "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}
            return self._ok(201, out)

        def _sub_create(self, body):
            info, sub = self.info, self.sub
            if info.key == "serviceaccounts" and sub == "token":
                sa = sim.store.get_ref("serviceaccounts", self.ns, self.name)
                if sa is None:
                    raise errors.not_found(info, self.name)
                spec = dict(body.get("spec") or {})
                exp = int(spec.get("expirationSeconds") or 3600)
                aud = spec.get("audiences") or [__import__("apisim.pki", fromlist=["ISSUER"]).ISSUER]
                bound = None
                bor = spec.get("boundObjectRef")
                if bor:
                    res = {"Pod": "pods", "Secret": "secrets"}.get(bor.get("kind"))
                    o = sim.store.get_ref(res, self.ns, bor.get("name", "")) if res else None
                    if o is None:
                        raise errors.not_found(sim.registry.by_key(res or "pods"), bor.get("name", ""))
                    bound = {"kind": bor["kind"], "name": bor["name"], "uid": o["metadata"]["uid"]}
                now = int(time.time())
                claims = bound_token_claims(self.ns, self.name, sa["metadata"]["uid"], aud, exp, now, bound)
                token = sim.pki.sign_jwt(claims)
                spec.setdefault("audiences", aud)
                spec.setdefault("expirationSeconds", exp)
                spec.setdefault("boundObjectRef", None)
                import datetime
                ts = datetime.datetime.fromtimestamp(now + exp, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                return self._ok(201, {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                                      "metadata": {"name": self.name, "namespace": self.ns,
                                                   "creationTimestamp": None},
                                      "spec": spec, "status": {"token": token, "expirationTimestamp": ts}})
            if info.key == "pods" and sub == "eviction":
                return self._evict(body)
            if info.key == "pods" and sub == "binding":
                target = (body.get("target") or {}).get("name", "")

                def bind(o):
                    if (o.get("spec") or {}).get("nodeName"):
                        raise errors.conflict(info, self.name, 'pod %s is already assigned to node "%s"' % (
                            self.name, o["spec"]["nodeName"]))
                    o["spec"]["nodeName"] = target
                if sim.store.mutate("pods", self.ns, self.name, bind) is None:
                    raise errors.not_found(info, self.name)
                return self._ok(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                      "code": 201})
            raise errors.method_not_allowed("the server does not allow this method on the requested resource")

        def _evict(self, body):
            av = body.get("apiVersion") or "policy/" + sim.registry.eviction_version()
            if av not in ("policy/v1", "policy/v1beta1"):
                raise errors.bad_request('Eviction in version "%s" cannot be handled as a Eviction: no kind "Eviction" '
                                         'is registered for version "%s"' % (av.split("/")[-1], av))
            if body.get("kind") not in (None, "Eviction"):
                raise errors.bad_request("the kind in the data (%s) does not match Eviction" % body.get("kind"))
            ctrl = sim.controllers
            if ctrl is not None and hasattr(ctrl, "evict"):
                code, out = ctrl.evict(self.ns, self.name, body, av)
                return self._ok(code, out)
            # fallback without B's controllers: no PDB evaluation, plain graceful delete
            if av == "policy/v1" and not sim.modern:
                from .eviction import _bad_version
                raise _bad_version(av)
            if sim.store.get_ref("pods", self.ns, self.name) is None:
                raise errors.not_found(self.info, self.name)
            opts = body.get("deleteOptions") or {}
            sim.store.delete("pods", self.ns, self.name, grace_seconds=opts.get("gracePeriodSeconds"),
                             preconditions=opts.get("preconditions"))
            return self._ok(201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "code": 201})

        # ------------------------------------------------------------ UPDATE / PATCH
        def do_update(self):
            info, sub = self.info, self.sub
            body = self._parse_body()
            self._validate_kind(body) if not sub or sub in ("status", "approval", "finalize") else None
            md = body.setdefault("metadata", {})
            if md.get("name") and md["name"] != self.name:
                raise errors.bad_request("the name of the object (%s) does not match the name on the URL (%s)" % (
                    md["name"], self.name))
            md["name"] = self.name
            if info.namespaced:
                if md.get("namespace") and md["namespace"] != self.ns:
                    raise errors.bad_request("the namespace of the provided object does not match the namespace sent "
                                             "on the request")
                md["namespace"] = self.ns
            return self._ok(200, self._out(self._update(body, sub)))

        def _decode(self, body):
            """What decoding does beyond JSON: events.k8s.io bodies become the stored core Event, MicroTime /
            Time fields are parsed (400 when they do not) and printed as the server prints them."""
            key = self.info.key
            if key == "events.k8s.io/events":
                body = evmod.to_core(body)
            if key in ("events", "events.k8s.io/events"):
                evmod.normalize_core_times(body, self.version)
            elif key == "coordination.k8s.io/leases":
                for f in ("acquireTime", "renewTime"):
                    evmod.normalize_time(body, ("spec", f), True, "Lease", self.version)
            return body

        def _validate_csr_conditions(self, body):
            """certificates validation of status.conditions on /approval and /status updates."""
            conds = (body.get("status") or {}).get("conditions") or []
            causes, seen, first = [], set(), {}
            for i, c in enumerate(conds):
                t, path = c.get("type") or "", "status.conditions[%d]" % i
                if not t:
                    causes.append(errors.field_required(path + ".type"))
                if t in ("Approved", "Denied", "Failed") and c.get("status", "True") != "True":
                    causes.append(errors.field_invalid(path + ".status", c.get("status"),
                                                       "%s condition may only be set to True" % t))
                if t in ("Approved", "Denied"):
                    other = "Denied" if t == "Approved" else "Approved"
                    if other in first:
                        causes.append(errors.field_invalid(path + ".type", t, "Approved and Denied conditions are "
                                                                              "mutually exclusive"))
                    first.setdefault(t, i)
                if t in seen:
                    causes.append({"reason": "FieldValueDuplicate", "message": "Duplicate value: \"%s\"" % t,
                                   "field": path + ".type"})
                seen.add(t)
            cur = sim.store.get_ref(self.info.key, "", self.name) or {}
            for t in ("Approved", "Denied", "Failed"):
                had = sum(1 for c in (cur.get("status") or {}).get("conditions") or [] if c.get("type") == t)
                if sum(1 for c in conds if c.get("type") == t) < had:
                    causes.append(errors.field_forbidden("status.conditions", 'updates may not remove a condition '
                                                                              'of type "%s"' % t))
            if causes:
                raise errors.invalid(self.info.kind, self.name, causes, group=self.info.group)

        def _update(self, body, sub, check_rv=True):
            info = self.info
            body = self._decode(body)
            if sub in ("", None):
                self._validate(body, create=False)
            if info.key == "namespaces" and sub == "finalize":
                cur = sim.store.get_ref("namespaces", "", self.name)
                if cur is None:
                    raise errors.not_found(info, self.name)
                fins = (body.get("spec") or {}).get("finalizers") or []

                def fin(o):
                    o.setdefault("spec", {})["finalizers"] = fins
                out = sim.store.mutate("namespaces", "", self.name, fin)
                return out
            if info.is_crd and not sub:
                self._crd_defaults(body)
            if info.key == "certificates.k8s.io/certificatesigningrequests" and sub in ("approval", "status"):
                self._validate_csr_conditions(body)
            if sub == "approval":
                conds = (body.get("status") or {}).get("conditions") or []
                now = now_rfc3339()
                for c in conds:
                    c.setdefault("lastUpdateTime", now)
                    c.setdefault("lastTransitionTime", now)
                    c.setdefault("status", "True")
            return sim.store.update(info.key, body, subresource=sub or None, check_rv=check_rv,
                                    dry_run=self._dry_run())

        def do_patch(self):
            info, sub = self.info, self.sub
            ct = self.headers.get("Content-Type") or ""
            for attempt in range(10):
                cur = sim.store.get_ref(info.key, self.ns, self.name)
                if cur is None:
                    raise errors.not_found(info, self.name)
                base = sim.render(info, self.version, cur)
                base["metadata"].pop("selfLink", None)
                patched = patchmod.apply_patch(ct, base, self.body, info.is_crd)
                if not isinstance(patched, dict):
                    raise errors.bad_request("patch produced a non-object")
                pmd = patched.setdefault("metadata", {})
                if pmd.get("name") != self.name:
                    raise errors.bad_request("metadata.name: Invalid value: \"%s\": field is immutable" %
                                             pmd.get("name"))
                explicit_rv = pmd.get("resourceVersion") != cur["metadata"].get("resourceVersion")
                if info.namespaced:
                    pmd["namespace"] = self.ns
                try:
                    out = self._update(patched, sub, check_rv=True)
                except errors.ApiError as e:
                    if e.code == 409 and e.reason == "Conflict" and not explicit_rv and attempt < 9:
                        continue
                    raise
                return self._ok(200, self._out(out))

        # ------------------------------------------------------------ DELETE
        def _delete_options(self):
            opts = {}
            if self.body.startswith(b"k8s\x00"):
                from .resources import decode_protobuf
                try:
                    opts = decode_protobuf(self.body)
                except (ValueError, IndexError) as e:
                    raise errors.bad_request("invalid DeleteOptions: %s" % e)
            elif self.body.strip():
                try:
                    opts = json.loads(self.body.decode())
                except ValueError as e:
                    raise errors.bad_request("invalid DeleteOptions: %s" % e)
                if not isinstance(opts, dict):
                    opts = {}
            q = self.query
            if "gracePeriodSeconds" in q:
                try:
                    opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
                except ValueError:
                    raise errors.bad_request("invalid gracePeriodSeconds")
            if "propagationPolicy" in q:
                opts["propagationPolicy"] = q["propagationPolicy"]
            if "orphanDependents" in q:
                opts["orphanDependents"] = q["orphanDependents"] in ("true", "1")
            if q.get("dryRun") == "All":
                opts["dryRun"] = ["All"]
            prop = opts.get("propagationPolicy")
            if prop is None and opts.get("orphanDependents") is True:
                prop = "Orphan"
            if prop not in (None, "Orphan", "Background", "Foreground"):
                raise errors.invalid("DeleteOptions", "", [errors.field_not_supported(
                    "propagationPolicy", prop, ["Foreground", "Background", "Orphan", "nil"])], group="meta.k8s.io")
            opts["_prop"] = prop
            return opts

        def do_delete(self):
            info = self.info
            opts = self._delete_options()
            dry = "All" in (opts.get("dryRun") or [])
            deleted_now, obj = sim.store.delete(info.key, self.ns, self.name,
                                                grace_seconds=opts.get("gracePeriodSeconds"),
                                                preconditions=opts.get("preconditions"), propagation=opts["_prop"],
                                                dry_run=dry)
            if not deleted_now or info.key in RETURN_DELETED_OBJECT:
                return self._ok(200, self._out(obj))
            details = {"name": self.name}
            if info.group:
                details["group"] = info.group
            details["kind"] = info.plural
            details["uid"] = obj["metadata"].get("uid", "")
            return self._ok(200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "details": details})

        def do_deletecollection(self):
            info, q = self.info, self.query
            opts = self._delete_options()
            pred = selectors.make_predicate(info, q.get("labelSelector"), q.get("fieldSelector"), sim.modern)
            refs = [o for o in sim.store.list_refs(info.key, self.ns or None) if pred is None or pred(o)]
            items = []
            for o in refs:
                md = o["metadata"]
                try:
                    _, out = sim.store.delete(info.key, md.get("namespace", ""), md["name"],
                                              grace_seconds=opts.get("gracePeriodSeconds"),
                                              propagation=opts["_prop"], dry_run="All" in (opts.get("dryRun") or []))
                    items.append(sim.render(info, self.version, out, with_kind=False))
                except errors.ApiError:
                    pass
            return self._ok(200, {"kind": info.list_kind, "apiVersion": info.api_version(self.version),
                                  "metadata": sim.list_meta(info, self.version, self.ns, sim.store.current_rv()),
                                  "items": items})

    return Handler


def _apply_schema_defaults(obj, schema):
    """Structural-schema defaulting: sets `default` of missing properties (recursively into existing objects)."""
    if not isinstance(schema, dict) or not isinstance(obj, dict):
        return
    props = schema.get("properties") or {}
    for k, sub in props.items():
        if not isinstance(sub, dict):
            continue
        if k not in obj and "default" in sub:
            obj[k] = clone(sub["default"])
        if isinstance(obj.get(k), dict):
            _apply_schema_defaults(obj[k], sub)
        elif isinstance(obj.get(k), list) and isinstance(sub.get("items"), dict):
            for it in obj[k]:
                _apply_schema_defaults(it, sub["items"])
