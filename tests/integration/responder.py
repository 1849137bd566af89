"""A small scriptable HTTPS test responder (stdlib only, 127.0.0.1) and PKI helpers.

    pki = make_pki(tmpdir)                       # CAs, server and client certs (openssl CLI)
    r = Responder(pki, client_ca=None)           # client_ca: require a client certificate
    r.handler = lambda req: (200, {"kind": "Pod"})
    r.start(); ... r.requests, r.connections ...; r.stop()

A handler gets a Request (method, path, query, headers, body, conn) and returns
(code, body[, headers]); body may be a dict/list (sent as JSON), str or bytes.  The default
handler answers 404 with a Status.  HTTP/1.1 with keep-alive; every accepted TCP connection is
counted in `connections`.
"""

import json
import os
import socket
import socketserver
import ssl
import subprocess
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler


def openssl(*args, cwd=None):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(d, name):
    key, crt = os.path.join(d, name + ".key"), os.path.join(d, name + ".crt")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=" + name)
    return key, crt


def _leaf(d, name, ca_key, ca_crt, subj, ext):
    key, csr, crt = (os.path.join(d, name + s) for s in (".key", ".csr", ".crt"))
    extfile = os.path.join(d, name + ".ext")
    with open(extfile, "w") as f:
        f.write(ext)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", key, "-out", csr, "-subj", subj)
    openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
            "-out", crt, "-days", "2", "-extfile", extfile)
    return key, crt


def make_pki(d):
    """Creates in directory d: ca (server CA), other-ca (unrelated), client-ca, a server
    certificate for 127.0.0.1/localhost/kubernetes.test and a client certificate.  Returns a dict
    of paths."""
    os.makedirs(d, exist_ok=True)
    ca_key, ca_crt = _ca(d, "ca")
    _, other_crt = _ca(d, "other-ca")
    cca_key, cca_crt = _ca(d, "client-ca")
    srv_key, srv_crt = _leaf(d, "server", ca_key, ca_crt, "/CN=kube-apiserver",
                             "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.test\n"
                             "extendedKeyUsage=serverAuth\n")
    cli_key, cli_crt = _leaf(d, "client", cca_key, cca_crt, "/O=system:masters/CN=kubemend",
                             "extendedKeyUsage=clientAuth\n")
    return {"dir": d, "ca": ca_crt, "other_ca": other_crt, "client_ca": cca_crt,
            "server_crt": srv_crt, "server_key": srv_key,
            "client_crt": cli_crt, "client_key": cli_key}


def status(code, reason, message, details=None, **meta):
    """A metav1.Status body."""
    s = {"kind": "Status", "apiVersion": "v1", "metadata": meta, "status": "Failure",
         "message": message, "reason": reason, "code": code}
    if details is not None:
        s["details"] = details
    return s


class Request:
    def __init__(self, method, path, headers, body, conn):
        self.method, self.raw_path, self.headers, self.body, self.conn = (
            method, path, headers, body, conn)
        u = urllib.parse.urlsplit(path)
        self.path = u.path
        self.query = {k: v[-1] for k, v in urllib.parse.parse_qs(u.query).items()}

    def json(self):
        return json.loads(self.body) if self.body else None

    def __repr__(self):
        return "%s %s" % (self.method, self.raw_path)


def _default_handler(req):
    return 404, status(404, "NotFound", "the server could not find the requested resource")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def _serve(self):
        r = self.server.responder
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        req = Request(self.command, self.path, dict(self.headers.items()), body,
                      self.server.conn_ids.get(id(self.request)))
        with r.lock:
            r.requests.append(req)
        out = r.handler(req)
        code, payload = out[0], out[1]
        headers = out[2] if len(out) > 2 else {}
        if isinstance(payload, (dict, list)):
            data, ctype = json.dumps(payload).encode(), "application/json"
        elif isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain"
        else:
            data, ctype = payload or b"", "application/octet-stream"
        self.send_response(code)
        self.send_header("Content-Type", headers.pop("Content-Type", ctype))
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def get_request(self):
        sock, addr = self.socket.accept()
        tls = self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self.responder.lock:
            self.responder.connections += 1
            self.conn_ids[id(tls)] = self.responder.connections
        return tls, addr

    def handle_error(self, request, client_address):
        with self.responder.lock:
            self.responder.errors += 1


class Responder:
    def __init__(self, pki, client_ca=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki["server_crt"], pki["server_key"])
        ctx.set_alpn_protocols(["http/1.1"])
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(client_ca)
        self.lock = threading.Lock()
        self.requests = []
        self.connections = 0
        self.errors = 0
        self.handler = _default_handler
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.ctx = ctx
        self.server.responder = self
        self.server.conn_ids = {}
        self.port = self.server.server_address[1]
        self.url = "https://127.0.0.1:%d" % self.port
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def paths(self):
        with self.lock:
            return [r.raw_path for r in self.requests]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
