"""Helpers for the kubemend CLI/operator integration tests (engineer O's): run the binary against
SimProcess, install crds/ and deploy/, run the operator as the deploy/ ServiceAccount."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "apisim"))

from apisim.testing import SimProcess  # noqa: E402,F401

BIN = os.environ.get("KUBEMEND_BIN") or os.path.join(ROOT, "build", "kubemend")
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")


def run(args, timeout=300, env=None):
    return subprocess.run([BIN] + list(args), capture_output=True, text=True, timeout=timeout, env=env)


def wait_for(fn, timeout=60.0, interval=0.2, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def http_get(port, path):
    """(status, body) of GET http://127.0.0.1:<port><path>; (None, error) when nothing answers."""
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return None, str(e)


def writes(sim, exclude=("events",)):
    """Write requests counted by the simulator since the last reset, by (verb, resource)."""
    _, snap = sim.sim("GET", "/_sim/counters")
    out = {}
    for r in snap["requests"]:
        if r["verb"] in WRITE_VERBS and r["resource"] not in exclude and 200 <= r["code"] < 300:
            out[(r["verb"], r["resource"], r["subresource"])] = out.get(
                (r["verb"], r["resource"], r["subresource"]), 0) + r["count"]
    return out


def install(sim):
    """kubectl apply of crds/ and deploy/, exactly as the README says."""
    sim.kubectl("apply", "-k", os.path.join(ROOT, "crds"))
    sim.kubectl("wait", "--for=condition=Established", "crd/clusterrecoveries.kubemend.io", "--timeout=30s")
    sim.kubectl("apply", "-k", os.path.join(ROOT, "deploy"))


def sa_kubeconfig(sim, ns="kubemend-system", sa="kubemend"):
    """A kubeconfig with a legacy token of the deploy/ ServiceAccount, so the simulator enforces
    exactly deploy/'s RBAC on the operator.  Legacy tokens are only valid while their Secret holds
    them, so the token Secret is created too (as the tokens controller would)."""
    import base64
    code, sao = sim.request("GET", "/api/v1/namespaces/%s/serviceaccounts/%s" % (ns, sa))
    assert code == 200, sao
    secret = sa + "-token-test"
    code, body = sim.sim("POST", "/_sim/token", {"namespace": ns, "serviceAccount": sa, "secretName": secret})
    assert code == 200, body
    token = body["token"]
    obj = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
           "metadata": {"name": secret, "namespace": ns, "annotations": {
               "kubernetes.io/service-account.name": sa,
               "kubernetes.io/service-account.uid": sao["metadata"]["uid"]}},
           "data": {"token": base64.b64encode(token.encode()).decode()}}
    code, out = sim.request("POST", "/api/v1/namespaces/%s/secrets" % ns, obj)
    assert code == 201, out
    return sim.token_kubeconfig(token)


class Operator:
    def __init__(self, kubeconfig, logpath, extra=()):
        self.logpath = logpath
        self.log = open(logpath, "w")
        self.proc = subprocess.Popen(
            [BIN, "operator", "--kubeconfig", kubeconfig, "--leader-elect", "--namespace",
             "kubemend-system", "--metrics-bind-address", "127.0.0.1:0",
             "--health-probe-bind-address", "127.0.0.1:0", "--log-level", "debug"] + list(extra),
            stdout=self.log, stderr=subprocess.STDOUT)

    def text(self):
        with open(self.logpath) as f:
            return f.read()

    def leading(self):
        return "acting as leader" in self.text()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def crec_yaml(name, spec=""):
    return ("apiVersion: kubemend.io/v1alpha1\nkind: ClusterRecovery\nmetadata:\n  name: %s\nspec:\n%s"
            % (name, spec or "  {}\n"))


def get_crec(sim, name):
    code, obj = sim.request("GET", "/apis/kubemend.io/v1alpha1/clusterrecoveries/" + name)
    return obj if code == 200 else None


def cond(obj, type_):
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def lease_holder(sim):
    code, obj = sim.request("GET", "/apis/coordination.k8s.io/v1/namespaces/kubemend-system/leases/kubemend-leader")
    return (obj.get("spec") or {}).get("holderIdentity") if code == 200 else None


def dumps(o):
    return json.dumps(o, indent=1, sort_keys=True)
