"""Helpers for the step integration tests (test_pods.py, test_csr.py): start apisim, run one step
through build/tools/kmstep, read its JSON lines, act as a node (client cert from the sim's CA)."""

import glob
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "apisim"))

from apisim import csrgen  # noqa: E402
from apisim.testing import SimProcess  # noqa: E402,F401


def tools_dir():
    return os.environ.get("KUBEMEND_TOOLS") or os.path.join(ROOT, "build", "tools")


def now_rfc3339(offset=0):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


class StepRun:
    """Output of one kmstep run: events, progress texts, decisions, result/error."""

    def __init__(self, rc, stdout, stderr):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr
        self.lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
        self.events = [x["event"] for x in self.lines if "event" in x]
        self.progress = [x["progress"] for x in self.lines if "progress" in x]
        self.decided = [x["decided"] for x in self.lines if "decided" in x]
        rb = [x["rebuild"] for x in self.lines if "rebuild" in x]
        self.rebuild = rb[-1] if rb else None  # {time, source} the step measured "stale" against
        res = [x["result"] for x in self.lines if "result" in x]
        self.result = res[-1] if res else None
        self.status = self.result["status"] if self.result else None
        self.condition = self.result["condition"] if self.result else None
        self.counters = self.result["counters"] if self.result else None

    def reasons(self, reason):
        return [e["message"] for e in self.events if e["reason"] == reason]

    def __repr__(self):
        return "StepRun(rc=%s, result=%s, stderr=%s)" % (self.rc, self.result, self.stderr[-2000:])


def kmstep_args(sim, step=None, spec=None, started_at=None, dry_run=False, status_file=None,
                approver=None, rebuild_time=None, kubeconfig=None, current_ca=None):
    args = [os.path.join(tools_dir(), "kmstep"), "--kubeconfig", kubeconfig or sim.kubeconfig,
            "--log-level", "info"]
    if rebuild_time:
        args += ["--rebuild-time", rebuild_time]
    if current_ca:
        args += ["--current-ca", current_ca]
    if step:
        args += ["--step", step]
    if approver is not None:
        args += ["--approver", str(approver)]
    if spec is not None:
        args += ["--spec", json.dumps(spec)]
    if started_at:
        args += ["--started-at", started_at]
    if dry_run:
        args.append("--dry-run")
    if status_file:
        args += ["--status-file", status_file]
    return args


def kmstep(sim, step, timeout=300, env=None, **kw):
    cp = subprocess.run(kmstep_args(sim, step=step, **kw), capture_output=True, text=True, timeout=timeout,
                        env=env)
    return StepRun(cp.returncode, cp.stdout, cp.stderr)


def get(sim, path):
    code, body = sim.request("GET", path)
    assert code == 200, (path, code, body)
    return body


def counters(sim):
    code, body = sim.sim("GET", "/_sim/counters")
    assert code == 200, body
    return body


def count_requests(sim, verb, resource, subresource="", code=None):
    n = 0
    for r in counters(sim)["requests"]:
        if r["verb"] == verb and r["resource"] == resource and r["subresource"] == subresource and \
                (code is None or r["code"] == code):
            n += r["count"]
    return n


def wait_for(pred, timeout=60, interval=0.2, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s" % what)


# ---- acting as a node ----------------------------------------------------------------------

def _current_ca(sim):
    pki = os.path.join(sim.tmp, "work", "pki")
    gens = sorted(glob.glob(os.path.join(pki, "ca-*.crt")),
                  key=lambda p: int(re.search(r"ca-(\d+)\.crt$", p).group(1)))
    assert gens, "no CA in %s" % pki
    crt = gens[-1]
    return crt, crt[:-4] + ".key"


def node_identity(sim, node):
    """(cert_path, key_path) of a client certificate CN=system:node:<node>, O=system:nodes."""
    ca_crt, ca_key = _current_ca(sim)
    base = os.path.join(sim.tmp, "node-" + node)
    if not os.path.exists(base + ".crt"):
        subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", base + ".key", "-out", base + ".csr",
                        "-subj", "/O=system:nodes/CN=system:node:%s" % node],
                       check=True, capture_output=True)
        with open(base + ".ext", "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=clientAuth\n")
        subprocess.run(["openssl", "x509", "-req", "-in", base + ".csr", "-CA", ca_crt, "-CAkey", ca_key,
                        "-CAcreateserial", "-days", "2", "-out", base + ".crt", "-extfile", base + ".ext"],
                       check=True, capture_output=True)
    return base + ".crt", base + ".key"


def request_as(sim, cert, method, path, body=None):
    ctx = ssl.create_default_context(cafile=sim.ca_file)
    ctx.load_cert_chain(*cert)
    conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=ctx, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json",
                                                        "Accept": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read().decode() or "null")
    finally:
        conn.close()


def create_csr_as_node(sim, node, name, cn=None, orgs=("system:nodes",), dns=(), ips=(), emails=(), uris=(),
                       usages=("digital signature", "key encipherment", "server auth"),
                       signer="kubernetes.io/kubelet-serving"):
    pem = csrgen.build_csr(cn=cn or "system:node:%s" % node, orgs=orgs, dns=dns, ips=ips, emails=emails, uris=uris)
    obj = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
           "metadata": {"name": name},
           "spec": {"request": csrgen.csr_request_b64(pem), "signerName": signer, "usages": list(usages)}}
    code, body = request_as(sim, node_identity(sim, node), "POST",
                            "/apis/certificates.k8s.io/v1/certificatesigningrequests", obj)
    assert code == 201, (code, body)
    assert body["spec"]["username"] == "system:node:%s" % node
    return body


def csr_conditions(sim, name):
    return get(sim, "/apis/certificates.k8s.io/v1/certificatesigningrequests/" + name)["status"].get(
        "conditions", [])
