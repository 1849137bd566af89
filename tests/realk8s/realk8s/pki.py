"""A kubeadm-like PKI and kubeconfig files, made with the openssl CLI (apisim.pki's helpers).

Layout under `root` (like /etc/kubernetes; node files live where a node would keep them):

    pki/ca.{crt,key}                         cluster CA (RSA), also the controller-manager's CSR signer
    pki/front-proxy-ca.{crt,key}             front-proxy CA (RSA) -> --requestheader-client-ca-file
    pki/front-proxy-client.{crt,key}         CN=front-proxy-client (the aggregator's client cert)
    pki/sa.{key,pub}                         service-account key pair (RSA)
    pki/apiserver.{crt,key}                  serving cert: 127.0.0.1, localhost, kubernetes[.default[.svc[...]]], 10.96.0.1
    pki/apiserver-kubelet-client.{crt,key}   CN=kube-apiserver-kubelet-client, O=system:masters
    admin.conf                               CN=kubernetes-admin, O=system:masters
    controller-manager.conf                  CN=system:kube-controller-manager
    scheduler.conf                           CN=system:kube-scheduler
    nodes/<node>/kubelet.conf                CN=system:node:<node>, O=system:nodes (issued on demand = "join")

Leaf keys are EC P-256 (fast); the CAs and sa.key are RSA 2048 as kubeadm's.
"""

import base64
import calendar
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import yaml
from apisim.pki import SAKey, genkey, issue_cert, new_ca, write_private

SERVICE_IP = "10.96.0.1"
APISERVER_SANS = ["IP:127.0.0.1", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default",
                  "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local", "IP:" + SERVICE_IP,
                  "IP:10.0.0.1"]  # the advertise address
CLUSTER_NAME = "kubernetes"

# (file stem, CN, organisations) of the control-plane client certificates signed by the cluster CA
_CLIENTS = {
    "admin": ("kubernetes-admin", ["system:masters"]),
    "controller-manager": ("system:kube-controller-manager", []),
    "scheduler": ("system:kube-scheduler", []),
}


def _b64(text):
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def kubeconfig_doc(server, ca_pem, user, cert_pem=None, key_pem=None, token=None, cluster=CLUSTER_NAME):
    """A kubeconfig (dict) like kubeadm's: embedded CA and client certificate, or a bearer token."""
    creds = {}
    if cert_pem:
        creds = {"client-certificate-data": _b64(cert_pem), "client-key-data": _b64(key_pem)}
    if token:
        creds["token"] = token
    ctx = "%s@%s" % (user, cluster)
    return {"apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)}}],
            "users": [{"name": user, "user": creds}],
            "contexts": [{"name": ctx, "context": {"cluster": cluster, "user": user}}],
            "current-context": ctx}


def write_kubeconfig(path, doc):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    write_private(tmp, yaml.safe_dump(doc, sort_keys=False))
    os.replace(tmp, path)
    return path


def load_kubeconfig(path):
    """(server, ca_pem, cert_pem, key_pem, token) of a kubeconfig written by kubeconfig_doc()."""
    with open(path) as f:
        doc = yaml.safe_load(f)
    cluster = doc["clusters"][0]["cluster"]
    user = doc["users"][0]["user"]

    def dec(k):
        return base64.b64decode(user[k]).decode() if user.get(k) else None
    return (cluster["server"], base64.b64decode(cluster["certificate-authority-data"]).decode(),
            dec("client-certificate-data"), dec("client-key-data"), user.get("token"))


def cert_not_before(pem_or_path):
    """notBefore of a PEM certificate as epoch seconds."""
    args = ["openssl", "x509", "-noout", "-startdate"]
    if os.path.exists(str(pem_or_path)):
        out = subprocess.run(args + ["-in", pem_or_path], capture_output=True, text=True, check=True).stdout
    else:
        out = subprocess.run(args, input=pem_or_path, capture_output=True, text=True, check=True).stdout
    stamp = out.strip().split("=", 1)[1]
    return calendar.timegm(time.strptime(stamp.replace(" GMT", "").strip(), "%b %d %H:%M:%S %Y"))


class ClusterPKI:
    """The PKI of one cluster under `root` (see the module docstring); `server` goes into the kubeconfigs."""

    def __init__(self, root, server):
        self.root = os.path.abspath(root)
        self.server = server
        self.pki_dir = os.path.join(self.root, "pki")
        self.nodes_dir = os.path.join(self.root, "nodes")
        self.generation = 0

    def path(self, name):
        return os.path.join(self.pki_dir, name)

    @property
    def ca_file(self):
        return self.path("ca.crt")

    def ca_pem(self):
        with open(self.ca_file) as f:
            return f.read()

    def front_proxy_ca_pem(self):
        with open(self.path("front-proxy-ca.crt")) as f:
            return f.read()

    def conf(self, name):
        """Path of a control-plane kubeconfig: admin, controller-manager, scheduler."""
        return os.path.join(self.root, name + ".conf")

    def exists(self):
        return os.path.isfile(self.path("ca.key"))

    # ---------------------------------------------------------------- generation
    def generate(self, not_before_after=None):
        """Write a complete new PKI and the control-plane kubeconfigs (overwrites pki/ and *.conf; node files are
        left alone). not_before_after: epoch seconds the new CAs' notBefore must be later than (waits for it)."""
        if not_before_after is not None:
            while int(time.time()) <= int(not_before_after):
                time.sleep(0.2)
        os.makedirs(self.pki_dir, exist_ok=True)
        self.generation += 1
        with ThreadPoolExecutor(max_workers=3) as ex:
            ca = ex.submit(new_ca, self.path("ca.crt"), self.path("ca.key"), "kubernetes")
            fp = ex.submit(new_ca, self.path("front-proxy-ca.crt"), self.path("front-proxy-ca.key"), "front-proxy-ca")
            sa = ex.submit(genkey, "rsa")
            ca.result()
            fp.result()
            sa_pem = sa.result()
        write_private(self.path("sa.key"), sa_pem)
        with open(self.path("sa.pub"), "wb") as f:
            f.write(SAKey(sa_pem, "rsa").pub_pem)
        ca_pair = (self.path("ca.crt"), self.path("ca.key"))
        jobs = {
            "apiserver": (ca_pair, "kube-apiserver", [], APISERVER_SANS, False),
            "apiserver-kubelet-client": (ca_pair, "kube-apiserver-kubelet-client", ["system:masters"], None, True),
            "front-proxy-client": ((self.path("front-proxy-ca.crt"), self.path("front-proxy-ca.key")),
                                   "front-proxy-client", [], None, True),
        }
        for stem, (cn, orgs) in _CLIENTS.items():
            jobs["conf:" + stem] = (ca_pair, cn, orgs, None, True)
        with ThreadPoolExecutor(max_workers=4) as ex:
            futs = {k: ex.submit(issue_cert, self.pki_dir, c[0], c[1], cn, orgs, sans, client)
                    for k, ((c, cn, orgs, sans, client)) in jobs.items()}
            results = {k: f.result() for k, f in futs.items()}
        ca_pem = self.ca_pem()
        for k, (cert, key) in results.items():
            if k.startswith("conf:"):
                stem = k[5:]
                write_kubeconfig(self.conf(stem), kubeconfig_doc(self.server, ca_pem, _CLIENTS[stem][0], cert, key))
            else:
                with open(self.path(k + ".crt"), "w") as f:
                    f.write(cert)
                write_private(self.path(k + ".key"), key)
        return self

    def archive(self, label):
        """Move pki/ and the control-plane kubeconfigs to <root>/<label>/ (what was 'lost'); returns that path."""
        dest = os.path.join(self.root, label)
        os.makedirs(dest, exist_ok=True)
        if os.path.isdir(self.pki_dir):
            shutil.move(self.pki_dir, os.path.join(dest, "pki"))
        for stem in _CLIENTS:
            if os.path.exists(self.conf(stem)):
                shutil.move(self.conf(stem), os.path.join(dest, stem + ".conf"))
        return dest

    # ---------------------------------------------------------------- users and nodes
    def client_cert(self, cn, orgs=()):
        """(cert_pem, key_pem) of a client certificate from the current cluster CA."""
        return issue_cert(self.pki_dir, self.path("ca.crt"), self.path("ca.key"), cn, list(orgs), None, True)

    def user_kubeconfig(self, path, cn, orgs=()):
        """Write a kubeconfig for user cn/orgs (client cert from the current CA) to path; returns path."""
        cert, key = self.client_cert(cn, orgs)
        return write_kubeconfig(path, kubeconfig_doc(self.server, self.ca_pem(), cn, cert, key))

    def node_conf(self, node):
        return os.path.join(self.nodes_dir, node, "kubelet.conf")

    def join_node(self, node):
        """Issue node credentials from the current CA (CN=system:node:<node>, O=system:nodes) into
        nodes/<node>/kubelet.conf — what `kubeadm join` leaves on a node; returns the path."""
        if not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", node):
            raise ValueError("invalid node name %r" % node)
        return self.user_kubeconfig(self.node_conf(node), "system:node:" + node, ["system:nodes"])
