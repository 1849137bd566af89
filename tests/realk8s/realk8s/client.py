"""A small Kubernetes REST client (stdlib): client certificate or bearer token, keep-alive per thread, JSON,
list + watch informers. Used by the control plane helpers, the kubelet simulator and the seed installer."""

import http.client
import json
import os
import shutil
import ssl
import tempfile
import threading
import time
import urllib.parse

from apisim.pki import write_private

from .pki import load_kubeconfig


class ApiError(RuntimeError):
    def __init__(self, method, path, status, body):
        self.method, self.path, self.status, self.body = method, path, status, body
        msg = body.get("message") if isinstance(body, dict) else str(body)[:300]
        super().__init__("%s %s -> %s: %s" % (method, path, status, msg))

    @property
    def reason(self):
        return self.body.get("reason") if isinstance(self.body, dict) else None


def _decode(text):
    """Parsed JSON, or the text itself when it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _ssl_context(ca_pem, cert_pem=None, key_pem=None):
    ctx = ssl.create_default_context(cadata=ca_pem)
    if cert_pem:
        # load_cert_chain() only takes files: write them to a private temporary folder for the call
        d = tempfile.mkdtemp(prefix="realk8s-cred-")
        try:
            cp, kp = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
            with open(cp, "w") as f:
                f.write(cert_pem)
            write_private(kp, key_pem)
            ctx.load_cert_chain(cp, kp)
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return ctx


class Client:
    """HTTPS client of one API server as one identity. Thread-safe: one keep-alive connection per thread."""

    def __init__(self, server, ca_pem, cert_pem=None, key_pem=None, token=None, user_agent="realk8s/1.0"):
        u = urllib.parse.urlsplit(server)
        self.server = server
        self.host, self.port = u.hostname, u.port or 443
        self.token = token
        self.user_agent = user_agent
        self.ctx = _ssl_context(ca_pem, cert_pem, key_pem)
        self._local = threading.local()

    @classmethod
    def from_kubeconfig(cls, path, user_agent="realk8s/1.0"):
        server, ca, cert, key, token = load_kubeconfig(path)
        c = cls(server, ca, cert, key, token, user_agent=user_agent)
        c.kubeconfig = path
        return c

    def _conn(self, timeout):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout)
            self._local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop(self):
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def _headers(self, body, content_type, headers):
        h = {"Accept": "application/json", "User-Agent": self.user_agent}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if body is not None:
            h["Content-Type"] = content_type or "application/json"
        h.update(headers or {})
        return h

    def request(self, method, path, body=None, content_type=None, headers=None, timeout=30, raw=False):
        """(status, parsed JSON or text). body: dict/list (JSON) or str/bytes. Retries once on a dropped
        keep-alive connection."""
        data = None
        if body is not None:
            data = json.dumps(body).encode() if isinstance(body, (dict, list)) else (
                body.encode() if isinstance(body, str) else body)
        hdrs = self._headers(body, content_type, headers)
        for attempt in (0, 1):
            conn = self._conn(timeout)
            try:
                conn.request(method, path, body=data, headers=hdrs)
                resp = conn.getresponse()
                text = resp.read().decode("utf-8", errors="replace")
                break
            except (http.client.RemoteDisconnected, http.client.CannotSendRequest, BrokenPipeError,
                    ConnectionResetError, http.client.BadStatusLine, ssl.SSLError, OSError):
                self._drop()
                if attempt:
                    raise
        if resp.getheader("Connection", "").lower() == "close":
            self._drop()
        return resp.status, (text if raw else _decode(text))

    def call(self, method, path, body=None, ok=(200, 201, 202), **kw):
        """request() that returns the parsed body and raises ApiError unless the status is in `ok`."""
        status, obj = self.request(method, path, body, **kw)
        if status not in ok:
            raise ApiError(method, path, status, obj)
        return obj

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def create(self, path, obj, **kw):
        return self.call("POST", path, obj, **kw)

    def patch(self, path, patch, kind="merge", **kw):
        ctype = {"merge": "application/merge-patch+json", "strategic": "application/strategic-merge-patch+json",
                 "json": "application/json-patch+json"}[kind]
        return self.call("PATCH", path, patch, content_type=ctype, **kw)

    def delete(self, path, body=None, ok=(200, 202), **kw):
        return self.call("DELETE", path, body, ok=ok, **kw)

    def watch(self, path, resource_version, timeout_seconds=300, stop=None, on_conn=None):
        """Yield watch events (dicts) of `path` from resource_version until the server ends the stream, the
        connection fails (the exception propagates) or stop (threading.Event) is set. on_conn(conn) receives
        the connection (closing it ends the watch)."""
        sep = "&" if "?" in path else "?"
        q = "%swatch=1&allowWatchBookmarks=true&timeoutSeconds=%d&resourceVersion=%s" % (
            sep, timeout_seconds, urllib.parse.quote(str(resource_version)))
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=timeout_seconds + 30)
        if on_conn is not None:
            on_conn(conn)
        try:
            conn.request("GET", path + q, headers=self._headers(None, None, None))
            resp = conn.getresponse()
            if resp.status != 200:
                raise ApiError("WATCH", path, resp.status, _decode(resp.read().decode(errors="replace")))
            while stop is None or not stop.is_set():
                line = resp.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()


class Informer:
    """List + watch of one collection path in a thread, keeping {(namespace, name): object} and calling
    on_event(type, obj) for ADDED/MODIFIED/DELETED (the initial list arrives as ADDED). Relists after 410 or a
    failed watch; `client_fn()` is asked for the client each time (so credentials can be swapped)."""

    def __init__(self, client_fn, path, on_event=None, name=None, page=500):
        self.client_fn = client_fn
        self.path = path
        self.on_event = on_event
        self.name = name or path
        self.page = page
        self.items = {}
        self.lock = threading.Lock()
        self.synced = threading.Event()
        self.stop_event = threading.Event()
        self.errors = 0
        self.last_error = None
        self._thread = None
        self._conn = None

    @staticmethod
    def key(obj):
        m = obj.get("metadata") or {}
        return m.get("namespace") or "", m.get("name")

    def start(self):
        self._thread = threading.Thread(target=self._run, name="informer " + self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        self.restart()

    def restart(self):
        """Cut the current watch; the informer resumes at once with client_fn()'s (possibly new) client."""
        conn = self._conn
        if conn is not None:
            try:
                conn.sock and conn.sock.shutdown(2)
            except OSError:
                pass

    def _set_conn(self, conn):
        self._conn = conn

    def list(self):
        with self.lock:
            return list(self.items.values())

    def get(self, ns, name):
        with self.lock:
            return self.items.get((ns or "", name))

    def _emit(self, etype, obj):
        if self.on_event is not None:
            try:
                self.on_event(etype, obj)
            except Exception as e:  # noqa: BLE001 - a handler bug must not kill the informer
                self.last_error = "handler: %r" % e

    def _relist(self, client):
        sep = "&" if "?" in self.path else "?"
        items, cont, rv = {}, "", None
        while True:
            q = "%slimit=%d" % (sep, self.page) + ("&continue=" + urllib.parse.quote(cont) if cont else "")
            body = client.get(self.path + q, timeout=60)
            if rv is None:
                rv = body["metadata"]["resourceVersion"]
            for it in body.get("items") or []:
                items[self.key(it)] = it
            cont = body["metadata"].get("continue")
            if not cont:
                break
        with self.lock:
            gone = [o for k, o in self.items.items() if k not in items]
            self.items = items
        for o in gone:
            self._emit("DELETED", o)
        for o in items.values():
            self._emit("ADDED", o)
        self.synced.set()
        return rv

    def _run(self):
        rv = None
        backoff = 0.2
        while not self.stop_event.is_set():
            try:
                client = self.client_fn()
                if rv is None:
                    rv = self._relist(client)
                for ev in client.watch(self.path, rv, timeout_seconds=240, stop=self.stop_event,
                                       on_conn=self._set_conn):
                    et, obj = ev.get("type"), ev.get("object") or {}
                    if et == "ERROR":
                        rv = None if obj.get("code") == 410 else rv
                        if obj.get("code") != 410:
                            raise RuntimeError("watch error: %s" % obj.get("message"))
                        break
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if et == "BOOKMARK":
                        continue
                    k = self.key(obj)
                    with self.lock:
                        if et == "DELETED":
                            self.items.pop(k, None)
                        else:
                            self.items[k] = obj
                    self._emit(et, obj)
                backoff = 0.2
            except Exception as e:  # noqa: BLE001 - server restarts, 401 after a PKI rebuild, ...
                self.errors += 1
                self.last_error = repr(e)
                if isinstance(e, ApiError) and e.status == 410:
                    rv = None
                self.stop_event.wait(backoff)
                backoff = min(backoff * 2, 3.0)
