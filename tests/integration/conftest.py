"""Shared pytest fixtures for the integration tests (generic: add feature-specific helpers in
separate modules).

    pki            session-wide test PKI (responder.make_pki): CAs, server and client certs
    responder      factory: responder(client_ca=None) -> a started Responder, stopped at teardown
    kubeconfig     factory: kubeconfig(server, ...) -> path of a kubeconfig file written in tmp_path
    kmctl          runner:  kmctl(*args, stdin=None) -> Result(rc, lines (parsed JSON), stdout, stderr)
    tools_dir      $KUBEMEND_TOOLS (build/tools), kubemend_bin $KUBEMEND_BIN
"""

import base64
import json
import os
import subprocess
import sys

import pytest
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import responder as _responder  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@pytest.fixture(scope="session")
def tools_dir():
    d = os.environ.get("KUBEMEND_TOOLS") or os.path.join(ROOT, "build", "tools")
    if not os.path.isdir(d):
        pytest.fail("KUBEMEND_TOOLS (%s) does not exist: run through `make test-integration`" % d)
    return d


@pytest.fixture(scope="session")
def kubemend_bin():
    return os.environ.get("KUBEMEND_BIN") or os.path.join(ROOT, "build", "kubemend")


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return _responder.make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def responder(pki):
    started = []

    def make(client_ca=None):
        r = _responder.Responder(pki, client_ca=client_ca).start()
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()


def _b64file(path):
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


@pytest.fixture
def kubeconfig(tmp_path):
    """kubeconfig(server, ca=PATH|None, ca_data=PATH|None, insecure=None, token=None,
    token_file=None, client_cert=None, client_key=None, client_data=False, namespace=None,
    tls_server_name=None, name="test") -> path.  *_data=True embeds files as base64."""
    count = [0]

    def make(server, ca=None, ca_data=None, insecure=None, token=None, token_file=None,
             client_cert=None, client_key=None, client_data=False, namespace=None,
             tls_server_name=None, user_extra=None, name="test"):
        cluster = {"server": server}
        if ca:
            cluster["certificate-authority"] = ca
        if ca_data:
            cluster["certificate-authority-data"] = _b64file(ca_data)
        if insecure is not None:
            cluster["insecure-skip-tls-verify"] = insecure
        if tls_server_name:
            cluster["tls-server-name"] = tls_server_name
        user = dict(user_extra or {})
        if token:
            user["token"] = token
        if token_file:
            user["tokenFile"] = token_file
        if client_cert and client_data:
            user["client-certificate-data"] = _b64file(client_cert)
            user["client-key-data"] = _b64file(client_key)
        elif client_cert:
            user["client-certificate"] = client_cert
            user["client-key"] = client_key
        ctx = {"cluster": name, "user": name}
        if namespace:
            ctx["namespace"] = namespace
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": name,
               "clusters": [{"name": name, "cluster": cluster}],
               "users": [{"name": name, "user": user}],
               "contexts": [{"name": name, "context": ctx}]}
        count[0] += 1
        path = tmp_path / ("kubeconfig-%d" % count[0])
        path.write_text(yaml.safe_dump(doc))
        return str(path)

    return make


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.lines = []
        for line in proc.stdout.splitlines():
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass

    @property
    def last(self):
        return self.lines[-1] if self.lines else None

    def __repr__(self):
        return "rc=%s stdout=%r stderr=%r" % (self.rc, self.stdout[-2000:], self.stderr[-2000:])


@pytest.fixture
def kmctl(tools_dir):
    exe = os.path.join(tools_dir, "kmctl")

    def run(*args, stdin=None, timeout=120, env=None):
        e = dict(os.environ)
        e.pop("KUBECONFIG", None)
        e.pop("KUBERNETES_SERVICE_HOST", None)
        e.update(env or {})
        p = subprocess.run([exe, *map(str, args)], input=stdin, capture_output=True, text=True,
                           timeout=timeout, env=e)
        return Result(p)

    return run
