"""ControlPlane: etcd + kube-apiserver + kube-controller-manager on 127.0.0.1 with a kubeadm-like PKI, and the
disaster kubemend repairs (rebuild_pki: new CA, new front-proxy CA, new sa key; etcd data kept).

    cp = ControlPlane("v1.26", "/tmp/x").start()
    cp.kubectl("get", "ns"); cp.request("GET", "/version"); cp.token_for("default", "default")
    cp.rebuild_pki(); cp.stop()

CLI (a cluster by hand; prints the admin kubeconfig path, runs until Ctrl-C / SIGTERM):
    cd tests/realk8s && python3 -m realk8s.cluster --version v1.26 --workdir /tmp/x [--nodes n1,n2]
"""

import argparse
import atexit
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from . import assets
from .client import ApiError, Client
from .pki import ClusterPKI, cert_not_before, kubeconfig_doc, write_kubeconfig

KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")
ISSUER = "https://kubernetes.default.svc.cluster.local"
SERVICE_CIDR = "10.96.0.0/12"
# Published in the `kubernetes` Endpoints (a loopback address is invalid there); the apiserver binds 127.0.0.1.
ADVERTISE_ADDRESS = "10.0.0.1"

_LIVE = set()
_LIVE_LOCK = threading.Lock()
WORKDIRS = []  # every ControlPlane workdir of this process (leftover_processes() looks for them)


def stop_all():
    """Stop every ControlPlane of this process that still runs (also registered with atexit)."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for cp in live:
        try:
            cp.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


atexit.register(stop_all)


def leftover_processes(workdirs=None):
    """[(pid, command line)] of running processes whose command line names one of `workdirs` (default: every
    ControlPlane workdir of this process) — etcd, kube-apiserver, kube-controller-manager left behind."""
    dirs = [d.rstrip("/") + "/" for d in (WORKDIRS if workdirs is None else workdirs)]
    out = []
    if not dirs:
        return out
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open("/proc/%s/stat" % pid) as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(d in cmd for d in dirs):
            out.append((int(pid), cmd.strip()[:200]))
    return out

_LIBC = ctypes.CDLL(None, use_errno=True)


def _child_setup():
    # Own process group (stop() kills the group) and SIGKILL when the spawning thread's process dies, so a
    # killed test run leaves nothing behind.
    os.setsid()
    _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StartError(RuntimeError):
    pass


def _minor(version):
    parts = version.lstrip("v").split(".")
    return int(parts[1]) if len(parts) > 1 else 0


class ControlPlane:
    """One real control plane in `workdir` (laid out like /etc/kubernetes, see pki.py, plus etcd/ and logs/).
    Ports are chosen once (free ports on 127.0.0.1) and kept across restarts and PKI rebuilds."""

    def __init__(self, version, workdir, verbosity=1, leader_elect=True, stop_timeout=3.0, extra_args=None,
                 audit_groups=()):
        self.version = version
        self.minor = _minor(version)
        self.workdir = os.path.abspath(workdir)
        self.bins = assets.binaries(version)
        self.etcd_bin = assets.etcd_binary()
        if self.etcd_bin is None:
            raise StartError("no etcd binary ($%s or etcd on PATH)" % assets.ENV_ETCD)
        self.verbosity = verbosity
        self.leader_elect = leader_elect
        # SIGTERM, then SIGKILL after this long: kube-apiserver keeps waiting for open watches after it stopped
        # listening (seen: > 15 s on 1.26), and a crashed control plane is what the disaster is about anyway
        self.stop_timeout = stop_timeout
        # {"kube-apiserver": [...], "kube-controller-manager": [...], "etcd": [...]}: appended to the flags
        self.extra_args = {k: list(v) for k, v in (extra_args or {}).items()}
        # audit log (logs/audit.log, Metadata level) of the requests of users in these groups; () = no audit
        self.audit_groups = list(audit_groups)
        self.etcd_port, self.etcd_peer_port = free_port(), free_port()
        self.port, self.cm_port = free_port(), free_port()
        self.url = "https://127.0.0.1:%d" % self.port
        self.pki = ClusterPKI(self.workdir, self.url)
        WORKDIRS.append(self.workdir)
        self.logs_dir = os.path.join(self.workdir, "logs")
        self.etcd_dir = os.path.join(self.workdir, "etcd")
        self.run_dir = os.path.join(self.workdir, "run")
        self.procs = {}
        self.rebuilds = 0
        self.old_ca_pems = []
        self.old_front_proxy_ca_pems = []
        self.timings = {}
        self._client = None
        self._tokens = 0
        self._lock = threading.RLock()
        self.sa_extra_key_files = []  # restart_apiserver(extra_key_files=...)

    # ------------------------------------------------------------------ paths and clients
    @property
    def admin_kubeconfig(self):
        return self.pki.conf("admin")

    @property
    def ca_file(self):
        return self.pki.ca_file

    @property
    def has_root_ca_configmaps(self):
        return self.minor >= 20

    @property
    def auto_token_secrets(self):
        """True when the controller-manager auto-creates a token Secret per ServiceAccount (< 1.24)."""
        return self.minor < 24

    def client(self):
        """Client with the admin certificate (re-read after a PKI rebuild)."""
        with self._lock:
            if self._client is None:
                self._client = Client.from_kubeconfig(self.admin_kubeconfig, user_agent="realk8s-admin/1.0")
            return self._client

    def request(self, method, path, body=None, **kw):
        """(status, parsed body) as kubernetes-admin. kw: content_type, headers, timeout, raw."""
        return self.client().request(method, path, body, **kw)

    def kubectl(self, *args, check=True, input=None, timeout=120, kubeconfig=None):
        cmd = [KUBECTL, "--kubeconfig", kubeconfig or self.admin_kubeconfig] + [str(a) for a in args]
        cp = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and cp.returncode != 0:
            raise AssertionError("kubectl %s failed (%d): %s%s" % (" ".join(map(str, args)), cp.returncode,
                                                                  cp.stdout, cp.stderr))
        return cp

    def token_for(self, namespace, service_account, audiences=None, expiration_seconds=3600):
        """A bound token from the TokenRequest API (1.19 serves it too)."""
        spec = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        body = self.client().create("/api/v1/namespaces/%s/serviceaccounts/%s/token" % (namespace, service_account),
                                    {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                     "spec": spec})
        return body["status"]["token"]

    def token_kubeconfig(self, token, path=None):
        """Write a kubeconfig using `token` (and the current CA); returns its path."""
        with self._lock:
            self._tokens += 1
            n = self._tokens
        path = path or os.path.join(self.workdir, "tokens", "token-%d.conf" % n)
        return write_kubeconfig(path, kubeconfig_doc(self.url, self.pki.ca_pem(), "token-user", token=token))

    def token_review(self, token):
        """status of a TokenReview of `token` (as admin)."""
        body = self.client().create("/apis/authentication.k8s.io/v1/tokenreviews",
                                    {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                     "spec": {"token": token}})
        return body.get("status") or {}

    def join_node(self, node):
        """Node credentials from the current CA (nodes/<node>/kubelet.conf); returns the path."""
        return self.pki.join_node(node)

    # ------------------------------------------------------------------ processes
    def _log(self, name):
        os.makedirs(self.logs_dir, exist_ok=True)
        return os.path.join(self.logs_dir, name + ".log")

    def _spawn(self, name, args):
        self._kill(name)
        args = list(args) + self.extra_args.get(name, [])
        log = open(self._log(name), "ab")
        log.write(("\n==== %s start %s\n" % (time.strftime("%H:%M:%S"), " ".join(args))).encode())
        log.flush()
        try:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=self.workdir, preexec_fn=_child_setup)
        finally:
            log.close()
        self.procs[name] = proc
        with _LIVE_LOCK:
            _LIVE.add(self)
        return proc

    def _kill(self, name, timeout=None):
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, self.stop_timeout if timeout is None else timeout),
                              (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        else:
            proc.wait()
        try:  # anything left in the group (none expected)
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def log_tail(self, name, lines=30):
        try:
            with open(self._log(name), "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - 16000))
                return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _wait(self, what, pred, timeout, procs=()):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            for p in procs:
                proc = self.procs.get(p)
                if proc is None or proc.poll() is not None:
                    raise StartError("%s exited while waiting for %s:\n%s" % (p, what, self.log_tail(p)))
            try:
                if pred():
                    return
            except Exception as e:  # noqa: BLE001 - not up yet
                last = e
            time.sleep(0.2)
        raise StartError("timed out after %ss waiting for %s (last error: %r)\n%s" % (
            timeout, what, last, "\n".join(self.log_tail(p, 15) for p in procs)))

    # ------------------------------------------------------------------ etcd
    def _start_etcd(self):
        os.makedirs(self.etcd_dir, mode=0o700, exist_ok=True)
        os.chmod(self.etcd_dir, 0o700)
        client_url = "http://127.0.0.1:%d" % self.etcd_port
        peer_url = "http://127.0.0.1:%d" % self.etcd_peer_port
        self._spawn("etcd", [self.etcd_bin, "--name", "default", "--data-dir", self.etcd_dir,
                             "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                             "--initial-cluster", "default=" + peer_url, "--snapshot-count", "10000",
                             "--log-level", "warn", "--logger", "zap"])

        def healthy():
            with urllib.request.urlopen(client_url + "/health", timeout=2) as r:
                return json.loads(r.read()).get("health") == "true"
        self._wait("etcd /health", healthy, 30, ["etcd"])

    # ------------------------------------------------------------------ kube-apiserver
    def apiserver_args(self):
        p = self.pki.path
        a = [self.bins["kube-apiserver"],
             "--advertise-address=" + ADVERTISE_ADDRESS, "--bind-address=127.0.0.1", "--secure-port=%d" % self.port,
             "--allow-privileged=true", "--authorization-mode=Node,RBAC",
             "--enable-admission-plugins=NodeRestriction", "--enable-bootstrap-token-auth=true",
             "--client-ca-file=" + p("ca.crt"),
             "--etcd-servers=http://127.0.0.1:%d" % self.etcd_port,
             "--kubelet-client-certificate=" + p("apiserver-kubelet-client.crt"),
             "--kubelet-client-key=" + p("apiserver-kubelet-client.key"),
             "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname",
             "--proxy-client-cert-file=" + p("front-proxy-client.crt"),
             "--proxy-client-key-file=" + p("front-proxy-client.key"),
             "--requestheader-allowed-names=front-proxy-client",
             "--requestheader-client-ca-file=" + p("front-proxy-ca.crt"),
             "--requestheader-extra-headers-prefix=X-Remote-Extra-",
             "--requestheader-group-headers=X-Remote-Group",
             "--requestheader-username-headers=X-Remote-User",
             "--service-account-issuer=" + ISSUER, "--api-audiences=" + ISSUER,
             "--service-account-key-file=" + p("sa.pub"),
             *["--service-account-key-file=" + f for f in self.sa_extra_key_files],
             "--service-account-signing-key-file=" + p("sa.key"),
             "--service-cluster-ip-range=" + SERVICE_CIDR,
             "--tls-cert-file=" + p("apiserver.crt"), "--tls-private-key-file=" + p("apiserver.key"),
             "--cert-dir=" + os.path.join(self.run_dir, "apiserver"),
             "--profiling=false", "--v=%d" % self.verbosity]
        if self.minor < 24:
            a.append("--insecure-port=0")
        if self.minor < 21:
            a.append("--feature-gates=ServiceAccountIssuerDiscovery=true")
        if self.audit_groups:
            a += ["--audit-policy-file=" + self._audit_policy(), "--audit-log-path=" + self.audit_log_path,
                  "--audit-log-mode=blocking", "--audit-log-maxsize=0", "--audit-log-maxbackup=0"]
        return a

    # ------------------------------------------------------------------ audit log
    @property
    def audit_log_path(self):
        return self._log("audit")

    def _audit_policy(self):
        """An audit policy recording (Metadata level, once the response is complete) every request of a user in
        audit_groups and nothing else; its path."""
        path = os.path.join(self.workdir, "audit-policy.yaml")
        policy = {"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                  "omitStages": ["RequestReceived", "ResponseStarted"],
                  "rules": [{"level": "Metadata", "userGroups": self.audit_groups}, {"level": "None"}]}
        with open(path, "w") as f:
            json.dump(policy, f)
        return path

    def audit_events(self, user=None):
        """The audit log's events (dicts, in order), those of `user` (a username) only when given. Each has
        user.username, verb, requestURI, responseStatus.code and annotations["authorization.k8s.io/decision"]."""
        out = []
        try:
            with open(self.audit_log_path) as f:
                for line in f:
                    if line.strip():
                        ev = json.loads(line)
                        if user is None or (ev.get("user") or {}).get("username") == user:
                            out.append(ev)
        except FileNotFoundError:
            pass
        return out

    def audit_denied(self, user=None):
        """[(verb, requestURI, code)] of the audited requests (of `user` when given) that the authorizer did not
        allow or that were answered 401/403."""
        return [(e["verb"], e["requestURI"], (e.get("responseStatus") or {}).get("code"))
                for e in self.audit_events(user)
                if (e.get("annotations") or {}).get("authorization.k8s.io/decision") != "allow" or
                (e.get("responseStatus") or {}).get("code") in (401, 403)]

    def _start_apiserver(self):
        t0 = time.time()
        self._spawn("kube-apiserver", self.apiserver_args())
        with self._lock:
            self._client = None

        def ready():
            status, body = self.request("GET", "/readyz", raw=True, timeout=5)
            return status == 200
        self._wait("kube-apiserver /readyz", ready, 90, ["etcd", "kube-apiserver"])
        self.timings["apiserver_ready"] = time.time() - t0

    # ------------------------------------------------------------------ kube-controller-manager
    def controller_manager_args(self):
        p = self.pki.path
        conf = self.pki.conf("controller-manager")
        a = [self.bins["kube-controller-manager"],
             "--bind-address=127.0.0.1", "--secure-port=%d" % self.cm_port,
             "--cert-dir=" + os.path.join(self.run_dir, "controller-manager"),
             "--kubeconfig=" + conf, "--authentication-kubeconfig=" + conf, "--authorization-kubeconfig=" + conf,
             "--client-ca-file=" + p("ca.crt"), "--requestheader-client-ca-file=" + p("front-proxy-ca.crt"),
             "--cluster-name=kubernetes",
             "--cluster-signing-cert-file=" + p("ca.crt"), "--cluster-signing-key-file=" + p("ca.key"),
             "--controllers=*,bootstrapsigner,tokencleaner",
             "--root-ca-file=" + p("ca.crt"), "--service-account-private-key-file=" + p("sa.key"),
             "--use-service-account-credentials=true",
             # no --allocate-node-cidrs: its nodeipam start polls the Node list after a fixed 10 s wait
             "--service-cluster-ip-range=" + SERVICE_CIDR,
             "--leader-elect=%s" % ("true" if self.leader_elect else "false"),
             # kubeadm keeps the defaults (15s/10s/2s); shorter here so a restart does not wait out the old lease
             "--leader-elect-lease-duration=5s", "--leader-elect-renew-deadline=4s",
             "--leader-elect-retry-period=1s",
             "--profiling=false", "--v=%d" % self.verbosity]
        if self.minor < 24:
            a.append("--port=0")
        return a

    def _cm_lease_holder(self):
        status, body = self.request("GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/"
                                           "kube-controller-manager", timeout=5)
        return (body.get("spec") or {}).get("holderIdentity") if status == 200 else None

    def _start_controller_manager(self, wait_defaults=True):
        t0 = time.time()
        before = self._cm_lease_holder() if self.leader_elect else None
        proc = self._spawn("kube-controller-manager", self.controller_manager_args())

        def healthy():
            with urllib.request.urlopen("https://127.0.0.1:%d/healthz" % self.cm_port, timeout=2,
                                        context=self._cm_ssl()) as r:
                return r.status == 200
        self._wait("kube-controller-manager /healthz", healthy, 60, ["kube-controller-manager"])
        if self.leader_elect:
            def leading():
                holder = self._cm_lease_holder()
                return holder is not None and holder != before
            self._wait("kube-controller-manager leader lease", leading, 60, ["kube-controller-manager"])
        if wait_defaults:
            self._wait("the default ServiceAccount", self._defaults_ready, 60, ["kube-controller-manager"])
        self.timings["controller_manager_ready"] = time.time() - t0
        return proc

    def _cm_ssl(self):
        import ssl
        # kube-controller-manager serves a self-signed certificate it writes to --cert-dir; trust exactly that.
        crt = os.path.join(self.run_dir, "controller-manager", "kube-controller-manager.crt")
        return ssl.create_default_context(cafile=crt)

    def _defaults_ready(self):
        status, sa = self.request("GET", "/api/v1/namespaces/default/serviceaccounts/default", timeout=5)
        if status != 200:
            return False
        if self.auto_token_secrets and not sa.get("secrets"):
            return False
        if self.has_root_ca_configmaps:
            status, cm = self.request("GET", "/api/v1/namespaces/default/configmaps/kube-root-ca.crt", timeout=5)
            if status != 200 or (cm.get("data") or {}).get("ca.crt") != self.pki.ca_pem():
                return False
        return True

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        """Generate the PKI (first time), start etcd, kube-apiserver, kube-controller-manager; wait until the
        apiserver is ready and the controller-manager leads and has made the default ServiceAccount (and
        kube-root-ca.crt where the version has it). Raises StartError with the log tail; stops what it started."""
        t0 = time.time()
        try:
            os.makedirs(self.workdir, exist_ok=True)
            if not self.pki.exists():
                self.pki.generate()
            self.timings["pki"] = time.time() - t0
            self._start_etcd()
            self._start_apiserver()
            self._start_controller_manager()
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.time() - t0
        return self

    def stop(self):
        """Kill the controller-manager, apiserver and etcd process groups (data stays in workdir)."""
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            self._kill(name)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def running(self):
        return {n: p.pid for n, p in self.procs.items() if p.poll() is None}

    def restart_apiserver(self, extra_key_files=None):
        """Restart kube-apiserver. extra_key_files (a list, [] to drop them): public-key files passed as further
        --service-account-key-file flags next to sa.pub from now on (the zero-downtime bridge of an old sa key);
        None keeps the current ones."""
        if extra_key_files is not None:
            self.sa_extra_key_files = list(extra_key_files)
        self._kill("kube-apiserver")
        self._start_apiserver()

    def restart_controller_manager(self):
        self._kill("kube-controller-manager")
        self._start_controller_manager()

    def rebuild_pki(self):
        """The disaster: stop kube-apiserver and kube-controller-manager, regenerate the whole PKI (new CA, new
        front-proxy CA, new sa key, new control-plane kubeconfigs; the old files move to lost-pki-<n>/; etcd data
        stays; nodes keep their old kubelet.conf until join_node), restart both. The new CAs' notBefore is later
        (in seconds) than the old ones'."""
        t0 = time.time()
        old_ca = self.pki.ca_pem()
        self.old_ca_pems.append(old_ca)
        self.old_front_proxy_ca_pems.append(self.pki.front_proxy_ca_pem())
        self._kill("kube-controller-manager")
        self._kill("kube-apiserver")
        self.timings["rebuild_stop"] = time.time() - t0
        self.rebuilds += 1
        t1 = time.time()
        self.pki.archive("lost-pki-%d" % self.rebuilds)
        self.pki.generate(not_before_after=cert_not_before(old_ca))
        self.timings["rebuild_generate"] = time.time() - t1
        self._start_apiserver()
        self._start_controller_manager()
        self.timings["rebuild_pki"] = time.time() - t0
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="realk8s.cluster", description="run a real control plane by hand")
    ap.add_argument("--version", default=None, help="e.g. v1.26 (default: the newest available)")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--nodes", default="", help="comma list: also run the kubelet/scheduler simulator")
    ap.add_argument("--seed", action="store_true", help="install the seed scenario and rebuild the PKI")
    args = ap.parse_args(argv)
    versions = assets.available_versions()
    if not versions:
        print(assets.skip_reason(), file=sys.stderr)
        return 2
    version = args.version or versions[-1]
    cp = ControlPlane(version, args.workdir)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    kubelet = None
    try:
        cp.start()
        print("control plane %s up in %.1fs: %s" % (version, cp.timings["start"], cp.url), flush=True)
        nodes = [n for n in args.nodes.split(",") if n]
        if args.seed and not nodes:
            nodes = ["cp-1", "worker-1", "worker-2"]
        if nodes:
            from .kubelet import KubeletSim
            kubelet = KubeletSim(cp.workdir, nodes).start()
        if args.seed:
            from . import seed
            desc = seed.install(cp, kubelet)
            seed.disaster(cp, kubelet, desc)
            print("seed installed and PKI rebuilt; description: %s" % desc["path"], flush=True)
        print("KUBECONFIG=%s" % cp.admin_kubeconfig, flush=True)
        while not done.wait(1):
            pass
    finally:
        if kubelet is not None:
            kubelet.stop()
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
