"""The recovery suites' scene on a real server: the seed after its PKI rebuild (realk8s.seed), what the server says
about it (snapshot), what a correct recovery must do to it (plan), and the README's commands.

    sc = Scene.build(cp, kubelet)        # seed installed, disaster done, AFTER_REBUILD created; all Ready
    before = snapshot(cp)                # right before kubemend runs
    p = plan(sc.desc, before, sc.rebuilt_at)
    ...run kubemend...
    after = snapshot(cp)

A snapshot holds only what the server answers: workloads with their generation and revisions (ReplicaSets of a
Deployment, ControllerRevisions of a StatefulSet/DaemonSet), pods, token Secrets (a SHA-256 of data.token, never
the token), CSRs, the extension-apiserver-authentication data and kube-public/cluster-info's CA.
"""

import base64
import calendar
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections import defaultdict

import yaml
from apisim.controllers import pod_is_ready
from realk8s import REPO_ROOT, seed
from realk8s.pki import cert_not_before, kubeconfig_doc, write_kubeconfig

KUBEMEND = os.environ.get("KUBEMEND_BIN") or os.path.join(REPO_ROOT, "build", "kubemend")
TOOLS = os.environ.get("KUBEMEND_TOOLS") or os.path.join(REPO_ROOT, "build", "tools")
KUBECTL = os.environ.get("KUBECTL", "/usr/bin/kubectl")
README = os.path.join(REPO_ROOT, "README.md")
OPERATOR_NS = "kubemend-system"

# Created after the PKI rebuild on a non-default ServiceAccount (next to the seed's StatefulSet
# monitoring/alertmanager): its pods hold fresh tokens, nothing to restart (issue 12: stale = older than the rebuild).
AFTER_REBUILD = [{"kind": "Deployment", "namespace": "web", "name": "blog-canary", "replicas": 1,
                  "serviceAccountName": "blog"}]

_KINDS = (("Deployment", "/apis/apps/v1/deployments"), ("StatefulSet", "/apis/apps/v1/statefulsets"),
          ("DaemonSet", "/apis/apps/v1/daemonsets"), ("ReplicaSet", "/apis/apps/v1/replicasets"),
          ("Job", "/apis/batch/v1/jobs"))


class Scene:
    """cp, kubelet, desc (the seed's description), rebuilt_at (the new cluster CA's notBefore, epoch s) and
    before_disaster {"pods_ready": bool, "tokens": seed.token_secret_states()} (taken just before the rebuild)."""

    def __init__(self, cp, kubelet, desc, before_disaster=None):
        self.cp, self.kubelet, self.desc = cp, kubelet, desc
        self.rebuilt_at = cert_not_before(desc["ca"]["new"])
        self.before_disaster = before_disaster

    @classmethod
    def build(cls, cp, kubelet):
        desc = seed.install(cp, kubelet)
        before = {"pods_ready": desc.builder.workloads_ready(), "tokens": seed.token_secret_states(cp)}
        seed.disaster(cp, kubelet, desc)
        b = desc.builder
        for w in AFTER_REBUILD:
            b.workload(w)
        seed.wait_for(b.workloads_ready, 120, "workloads created after the rebuild ready", detail=lambda: b.waiting_on)
        b.record_pods()
        b.save()
        return cls(cp, kubelet, desc, before)


# ------------------------------------------------------------------------------------------------ snapshot

def _ref(obj):
    m = obj["metadata"]
    return "%s/%s" % (m["namespace"], m["name"]) if m.get("namespace") else m["name"]


def _controller(obj):
    return next((o for o in obj["metadata"].get("ownerReferences") or [] if o.get("controller")), None)


def rolled_out(kind, obj):
    """Whether the workload's latest spec is rolled out and every pod of it Ready (status as the server says)."""
    st, sp = obj.get("status") or {}, obj.get("spec") or {}
    if kind != "Job" and st.get("observedGeneration", 0) < obj["metadata"].get("generation", 0):
        return False
    want = sp.get("replicas", 1)
    if kind == "Deployment":
        return st.get("replicas") == st.get("updatedReplicas") == st.get("readyReplicas") == want
    if kind == "StatefulSet":
        return (st.get("readyReplicas") == st.get("updatedReplicas") == want and
                st.get("currentRevision") == st.get("updateRevision"))
    if kind == "DaemonSet":
        n = st.get("desiredNumberScheduled")
        return bool(n) and st.get("updatedNumberScheduled") == st.get("numberReady") == n
    if kind == "ReplicaSet":
        return (st.get("readyReplicas") or 0) == want
    return bool(st.get("active") or st.get("succeeded"))


def _workloads(c):
    objs, revisions = {}, defaultdict(set)
    for kind, path in _KINDS:
        for o in c.get(path)["items"]:
            objs["%s/%s" % (kind, _ref(o))] = (kind, o)
            own = _controller(o)
            if kind == "ReplicaSet" and own:
                revisions[own["uid"]].add(o["metadata"]["name"])
    for cr in c.get("/apis/apps/v1/controllerrevisions")["items"]:
        own = _controller(cr)
        if own:
            revisions[own["uid"]].add(cr["metadata"]["name"])
    out = {}
    for key, (kind, o) in objs.items():
        m = o["metadata"]
        own = _controller(o)
        tmpl = ((o.get("spec") or {}).get("template") or {}).get("metadata") or {}
        out[key] = {"kind": kind, "uid": m["uid"], "generation": m.get("generation"),
                    "created": m["creationTimestamp"], "revisions": sorted(revisions[m["uid"]]),
                    "owner": "%s/%s/%s" % (own["kind"], m["namespace"], own["name"]) if own else None,
                    "templateAnnotations": dict(tmpl.get("annotations") or {}),
                    "rolledOut": rolled_out(kind, o), "status": o.get("status") or {}}
    return out


def _pods(c):
    out = {}
    for p in c.get("/api/v1/pods")["items"]:
        m = p["metadata"]
        own = _controller(p)
        out[_ref(p)] = {"uid": m["uid"], "created": m["creationTimestamp"], "deleting": bool(m.get(
            "deletionTimestamp")), "ready": (p.get("status") or {}).get("phase") == "Running" and pod_is_ready(p),
            "owner": "%s/%s/%s" % (own["kind"], m["namespace"], own["name"]) if own else None,
            "serviceAccount": (p.get("spec") or {}).get("serviceAccountName")}
    return out


def _token_secrets(c):
    out = {}
    for s in c.get("/api/v1/secrets?fieldSelector=type%3D" + seed.SA_TOKEN.replace("/", "%2F"))["items"]:
        m = s["metadata"]
        tok = (s.get("data") or {}).get("token")
        out[_ref(s)] = {"uid": m["uid"], "resourceVersion": m["resourceVersion"],
                        "tokenSha": hashlib.sha256(tok.encode()).hexdigest() if tok else None}
    return out


def kubeconfig_ca(text):
    """The CA (PEM) of a kubeconfig text's one cluster."""
    kc = yaml.safe_load(text)
    return base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"]).decode()


def cluster_info_ca(c):
    """The CA (PEM) in kube-public/cluster-info's kubeconfig."""
    return kubeconfig_ca(c.get("/api/v1/namespaces/kube-public/configmaps/cluster-info")["data"]["kubeconfig"])


def snapshot(cp):
    """What the server says now (see the module docstring): a dict of workloads, pods, tokens, csrs, extauth,
    clusterInfoCA, backups (the extension-apiserver-authentication backup ConfigMaps' data by name)."""
    c = cp.client()
    csrs = {x["metadata"]["name"]: x for x in c.get("/apis/certificates.k8s.io/v1/certificatesigningrequests")[
        "items"]}
    cms = c.get("/api/v1/namespaces/kube-system/configmaps")["items"]
    return {"workloads": _workloads(c), "pods": _pods(c), "tokens": _token_secrets(c), "csrs": csrs,
            "extauth": dict(c.get("/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication")[
                "data"]),
            "backups": {x["metadata"]["name"]: x.get("data") or {} for x in cms
                        if x["metadata"]["name"].startswith("extension-apiserver-authentication-backup")},
            "clusterInfoCA": cluster_info_ca(c)}


def epoch(stamp):
    return calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ"))


# ------------------------------------------------------------------------------------------------ plan

def plan(desc, snap, rebuilt_at):
    """What a correct recovery does, from the seed's description and the server (README: pods that mount a
    non-default ServiceAccount token issued before the rebuild are restarted through their workload's rollout,
    evicted when their owner has no rollout, listed for a human when they have no owner):
        rollouts  {"Kind/ns/name"}  Deployments, StatefulSets, DaemonSets
        evictions {"ns/pod"}        pods of a standalone ReplicaSet or a Job
        manual    {"ns/pod"}        ownerless pods (kept)
        newer     {"Kind/ns/name"}  workloads created after the rebuild (nothing to do: issue 12)
        untouched {"Kind/ns/name"}  every other workload not owned by another workload
    """
    rollouts, evictions, manual = set(), set(), set()
    for ref, p in desc["pods"].items():
        if p["phase"] != "before" or not p["automount"] or p["serviceAccount"] in (None, "default"):
            continue
        ns = ref.split("/", 1)[0]
        if not p["owner"]:
            manual.add(ref)
            continue
        kind, name = p["owner"].split("/", 1)
        owner = snap["workloads"].get("%s/%s/%s" % (kind, ns, name))
        if kind == "ReplicaSet" and owner and owner["owner"]:
            rollouts.add(owner["owner"])
        elif kind in ("StatefulSet", "DaemonSet"):
            rollouts.add("%s/%s/%s" % (kind, ns, name))
        else:
            evictions.add(ref)
    newer = {k for k, w in snap["workloads"].items() if not w["owner"] and epoch(w["created"]) >= rebuilt_at}
    untouched = {k for k, w in snap["workloads"].items() if not w["owner"]} - rollouts - newer
    return {"rollouts": rollouts, "evictions": evictions, "manual": manual, "newer": newer, "untouched": untouched}


def restarted(before, after):
    """{"Kind/ns/name"} of the workloads (not owned by another) whose spec changed between two snapshots."""
    return {k for k, w in after["workloads"].items() if not w["owner"] and k in before["workloads"] and
            w["generation"] != before["workloads"][k]["generation"]}


def pods_of(snap, workload):
    """{"ns/pod": info} of the live (not deleting) pods owned by the workload, directly or through its
    ReplicaSets."""
    owners = {workload} | {k for k, w in snap["workloads"].items() if w["owner"] == workload}
    return {ref: p for ref, p in snap["pods"].items() if p["owner"] in owners and not p["deleting"]}


# ------------------------------------------------------------------------------------------------ the README

def _readme_section(title):
    with open(README) as f:
        text = f.read()
    m = re.search(r"^## %s\n(.*?)(?=^## )" % re.escape(title), text, re.S | re.M)
    assert m, "README has no section %r" % title
    return m.group(1)


def readme_blocks(title):
    """The ```sh blocks of a README section, each a list of commands (comments after `#` dropped)."""
    out = []
    for block in re.findall(r"```sh\n(.*?)```", _readme_section(title), re.S):
        cmds = [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines()]
        out.append([c for c in cmds if c and not c.startswith("#")])
    return out


def readme_install_commands(minor):
    """The README's operator-mode commands for a server of minor version `minor`: the block that installs
    deploy/, with its `kubectl apply -k deploy/` replaced, below 1.25, by the command the README names for
    older servers."""
    title = "Running against a real cluster"
    block = next(b for b in readme_blocks(title) if "kubectl apply -k deploy/" in b)
    m = re.search(r"older than 1\.(\d+) use `([^`]+)`", _readme_section(title).replace("\n", " "))
    assert m, "README does not say what to run on older servers"
    if minor < int(m.group(1)):
        block = [m.group(2) if c == "kubectl apply -k deploy/" else c for c in block]
    return block


def readme_break_glass_commands():
    return next(b for b in readme_blocks("Running against a real cluster") if any(
        c.startswith("kubemend run --once") for c in b))


def command_env(tmp, kubeconfig):
    """Environment in which a README command runs as written: `kubectl` ($KUBECTL) and `kubemend` ($KUBEMEND_BIN)
    first on PATH, KUBECONFIG set, no in-cluster variables."""
    bindir = os.path.join(tmp, "bin")
    os.makedirs(bindir, exist_ok=True)
    for name, target in (("kubectl", KUBECTL), ("kubemend", KUBEMEND)):
        link = os.path.join(bindir, name)
        if not os.path.lexists(link):
            os.symlink(target, link)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE")}
    env.update(PATH=bindir + os.pathsep + env.get("PATH", ""), KUBECONFIG=kubeconfig)
    return env


def run_command(cmd, env, cwd, timeout=600):
    """Runs one README command with bash, as a user types it; CompletedProcess (text)."""
    return subprocess.run(["bash", "-c", cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------------ operator mode

def token_kubeconfig(cp, env, path):
    """A kubeconfig with the `kubemend` ServiceAccount's token (TokenRequest through `kubectl create token`,
    which needs kubectl >= 1.24; the harness's TokenRequest otherwise): what the Deployment's pod would get."""
    proc = subprocess.run([KUBECTL, "create", "token", "kubemend", "-n", OPERATOR_NS, "--duration=3600s"],
                          env=env, capture_output=True, text=True, timeout=60)
    token = proc.stdout.strip() if proc.returncode == 0 else cp.token_for(OPERATOR_NS, "kubemend")
    assert token.count(".") == 2, proc.stderr
    return write_kubeconfig(path, kubeconfig_doc(cp.url, cp.pki.ca_pem(), "kubemend", token=token))


class Operator:
    """`kubemend operator` as the Deployment runs it (its args; probes on free loopback ports), as a process of
    this test with the given kubeconfig; log in `log`."""

    def __init__(self, kubeconfig, log, args=("--leader-elect",)):
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [KUBEMEND, "operator", "--kubeconfig", kubeconfig, "--namespace", OPERATOR_NS, *args,
                 "--metrics-bind-address", "127.0.0.1:0", "--health-probe-bind-address", "127.0.0.1:0"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def stop(self, timeout=30):
        """SIGTERM; the exit code (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode


def copy_example(dst):
    shutil.copy(os.path.join(REPO_ROOT, "crds", "example-recovery.yaml"), dst)
    return dst
