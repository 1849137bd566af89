"""A kubelet + scheduler simulator that is an ordinary client of any API server (no kubelet or scheduler exists
here). One process simulates many nodes; it watches (never polls) pods and nodes.

    sim = KubeletSim(kubeconfig_dir, ["cp-1", "worker-1"]).start()      # kubeconfig_dir: the cluster root
    sim.wait_nodes_ready(); sim.create_serving_csr("worker-1"); sim.rejoin(); sim.stop()

    cd tests/realk8s && python3 -m realk8s.kubelet --kubeconfig-dir DIR --nodes n1,n2 [--auto-rejoin]
    (SIGHUP: re-join = new node certificates from DIR/pki, then reconnect; SIGTERM/SIGINT: exit)

Identities (the real authorizers see exactly these):
- scheduler: DIR/scheduler.conf (CN=system:kube-scheduler) lists/watches pods and nodes, POSTs pods/binding;
- each node: DIR/nodes/<node>/kubelet.conf (CN=system:node:<node>, O=system:nodes; written by `join`, i.e.
  issued from DIR/pki/ca.{crt,key} when missing) registers its Node, renews its Lease in kube-node-lease, posts
  its pods' status, finalizes their graceful deletion and creates its kubelet-serving CSRs — the Node authorizer
  and NodeRestriction admission apply.
Credentials are re-read from the files whenever they change on disk (e.g. scheduler.conf after a PKI rebuild).

Behaviour:
- Nodes: addresses InternalIP 10.0.<i/250>.<10+i%250> (i = position in the node list) and Hostname; Ready,
  MemoryPressure/DiskPressure/PIDPressure False; Lease renewed every `lease_renew` s, Node status every
  `status_interval` s, so the node lifecycle controller never taints them.
- Scheduler: a pending pod (no nodeName, schedulerName default-scheduler) is bound to the least-loaded Ready,
  schedulable node matching its nodeSelector, required nodeAffinity (matchExpressions incl. Gt/Lt, matchFields
  metadata.name as DaemonSet pods use) and whose NoSchedule/NoExecute taints it tolerates.
- Kubelet: a pod bound to a simulated node becomes Running/Ready after `ready_delay` s (phase, conditions,
  hostIP, podIP from 10.(100+i).x.y, startTime, containerStatuses ready); a pod with deletionTimestamp is deleted
  with gracePeriodSeconds 0 and its uid as precondition after min(grace period, `grace_cap`) s. Pods of other
  nodes are left alone. create_mirror_pod() makes a static pod's mirror (as the node); a deleted mirror pod is
  re-created (new uid) as a kubelet does.
"""

import argparse
import copy
import hashlib
import os
import signal
import sys
import threading
import time

from apisim import csrgen
from apisim.controllers import (Timers, WorkQueue, deletion_due, now_rfc3339, pod_is_ready,
                                running_pod_status)

from .client import ApiError, Client, Informer
from .pki import ClusterPKI, load_kubeconfig

ANN_MIRROR = "kubernetes.io/config.mirror"
LEASE_NS = "kube-node-lease"
CSR_KINDS = csrgen.KINDS


def micro_time(t=None):
    t = time.time() if t is None else t
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06dZ" % int((t % 1) * 1e6)


def node_ip(index):
    return "10.0.%d.%d" % (index // 250, 10 + index % 250)


def _meta(obj):
    return obj.get("metadata") or {}


# ------------------------------------------------------------------------------------------- scheduling rules

def _expr_matches(expr, value_of):
    key, op, vals = expr.get("key"), expr.get("operator"), expr.get("values") or []
    has, val = value_of(key)
    if op == "In":
        return has and val in vals
    if op == "NotIn":
        return not has or val not in vals
    if op == "Exists":
        return has
    if op == "DoesNotExist":
        return not has
    if op in ("Gt", "Lt"):
        try:
            a, b = int(val), int(vals[0])
        except (TypeError, ValueError, IndexError):
            return False
        return has and (a > b if op == "Gt" else a < b)
    return False


def node_matches_term(node, term):
    """A NodeSelectorTerm: every matchExpression (labels) and matchField (metadata.name) holds."""
    labels = _meta(node).get("labels") or {}
    name = _meta(node).get("name")
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False
    if not all(_expr_matches(e, lambda k: (k in labels, labels.get(k))) for e in exprs):
        return False
    return all(_expr_matches(f, lambda k: (k == "metadata.name", name)) for f in fields)


def tolerates(tolerations, taint):
    for t in tolerations or []:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if not t.get("key"):
            if t.get("operator") == "Exists":
                return True
            continue
        if t.get("key") != taint.get("key"):
            continue
        if t.get("operator") == "Exists" or t.get("value", "") == taint.get("value", ""):
            return True
    return False


def node_ready(node):
    return pod_is_ready(node)  # the same check: status.conditions[type=Ready].status == "True"


def _needs_work(pod):
    m = _meta(pod)
    if m.get("deletionTimestamp") or not (pod.get("spec") or {}).get("nodeName"):
        return True
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not (phase == "Running" and pod_is_ready(pod))


def pod_fits(pod, node):
    """Whether the simulated scheduler may put `pod` on `node` (see the module docstring)."""
    spec = pod.get("spec") or {}
    if not node_ready(node) or (node.get("spec") or {}).get("unschedulable"):
        return False
    labels = _meta(node).get("labels") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
                .get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = required.get("nodeSelectorTerms")
    if terms is not None and not any(node_matches_term(node, t) for t in terms):
        return False
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(spec.get("tolerations"), taint):
            return False
    return True


# ------------------------------------------------------------------------------------------- the simulator

class _Node:
    def __init__(self, name, index):
        self.name = name
        self.index = index
        self.ip = node_ip(index)
        self.client = None
        self.conf_mtime = None
        self.registered = False
        self.lease_rv = None
        self.last_status = 0.0
        self.last_lease = 0.0
        self.last_ok = 0.0
        self.joined_at = 0.0
        self.pod_ips = 0
        self.errors = 0
        self.last_error = None


class KubeletSim:
    """See the module docstring. kubeconfig_dir: the cluster root (scheduler.conf, nodes/<n>/kubelet.conf, pki/)."""

    def __init__(self, kubeconfig_dir, nodes, ready_delay=0.3, grace_cap=1.0, lease_renew=10.0,
                 status_interval=30.0, workers=4, auto_rejoin=False, kubelet_version=None, resync=10.0):
        self.dir = os.path.abspath(kubeconfig_dir)
        self.ready_delay = ready_delay
        self.grace_cap = grace_cap
        self.lease_renew = lease_renew
        self.status_interval = status_interval
        self.resync = resync
        self.auto_rejoin = auto_rejoin
        self.kubelet_version = kubelet_version
        self.nodes = {}
        self._lock = threading.RLock()
        for n in nodes:
            self._add(n)
        self._sched = None
        self._sched_mtime = None
        self._stop = threading.Event()
        self._timers = None
        self._queues = []
        self._workers = workers
        self._pending_since = {}
        self._deleting_due = {}
        self._load = {}
        self._pod_node = {}
        self._mirrors = {}
        self._bound_seen = {}
        self.pods = None
        self.node_informer = None
        self._hb = None
        self.counters = {"bind": 0, "running": 0, "finalized": 0, "status": 0, "lease": 0, "errors": 0,
                         "rejoin": 0, "reconnect": 0}

    def _add(self, name):
        with self._lock:
            if name not in self.nodes:
                self.nodes[name] = _Node(name, len(self.nodes))
            return self.nodes[name]

    # ------------------------------------------------------------------ credentials
    def _pki(self):
        server = load_kubeconfig(os.path.join(self.dir, "scheduler.conf"))[0]
        return ClusterPKI(self.dir, server)

    def join(self, name):
        """kubeadm join for one node: credentials from the cluster's current CA (needs DIR/pki/ca.key)."""
        return self._pki().join_node(name)

    def _conf(self, name):
        return os.path.join(self.dir, "nodes", name, "kubelet.conf")

    def node_client(self, name):
        """The node's Client, reloaded when its kubelet.conf changed (joined first when missing)."""
        node = self.nodes[name]
        path = self._conf(name)
        if not os.path.exists(path):
            self.join(name)
        mtime = os.stat(path).st_mtime_ns
        with self._lock:
            if node.client is None or node.conf_mtime != mtime:
                node.client = Client.from_kubeconfig(path, user_agent="kubelet-sim/%s" % name)
                node.conf_mtime = mtime
            return node.client

    def scheduler_client(self):
        path = os.path.join(self.dir, "scheduler.conf")
        mtime = os.stat(path).st_mtime_ns
        with self._lock:
            if self._sched is None or self._sched_mtime != mtime:
                if self._sched is not None:
                    self.counters["reconnect"] += 1
                self._sched = Client.from_kubeconfig(path, user_agent="scheduler-sim/1.0")
                self._sched_mtime = mtime
            return self._sched

    def rejoin(self, names=None):
        """Re-join nodes (all by default): new node certificates from the current CA, then reconnect and
        re-register. What an admin does on every node after a control-plane PKI rebuild."""
        for n in names or list(self.nodes):
            self.join(n)
            self.nodes[n].registered = False
            self.nodes[n].joined_at = time.time()
            self.counters["rejoin"] += 1
        self.reconnect()

    def reconnect(self):
        """Re-read every kubeconfig now and restart the watches with the current credentials."""
        with self._lock:
            self._sched = None
            for node in self.nodes.values():
                node.client = None
        for inf in (self.pods, self.node_informer):
            if inf is not None:
                inf.restart()
        self._wake()

    # ------------------------------------------------------------------ lifecycle
    def start(self):
        self._timers = Timers()
        self._queues = []
        for i in range(self._workers):
            q = WorkQueue("kubelet-%d" % i, self._sync_pod, self._timers)
            q.start()
            self._queues.append(q)
        self._sched_q = WorkQueue("scheduler", self._schedule, self._timers)
        self._sched_q.start()
        self._hb = threading.Thread(target=self._heartbeats, name="kubelet-sim-heartbeat", daemon=True)
        self._wake_ev = threading.Event()
        self._hb.start()
        self.node_informer = Informer(self.scheduler_client, "/api/v1/nodes", self._on_node,
                                                  name="nodes").start()
        self.pods = Informer(self.scheduler_client, "/api/v1/pods", self._on_pod, name="pods").start()
        return self

    def stop(self):
        self._stop.set()
        for inf in (self.pods, self.node_informer):
            if inf is not None:
                inf.stop()
        for q in self._queues + ([self._sched_q] if self._queues else []):
            q.stop()
        if self._timers is not None:
            self._timers.stop()
        if self._hb is not None:
            self._wake()
            self._hb.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def add_node(self, name):
        """Start simulating one more node (registered by the next heartbeat)."""
        self._add(name)
        self._wake()

    def _wake(self):
        ev = getattr(self, "_wake_ev", None)
        if ev is not None:
            ev.set()

    # ------------------------------------------------------------------ nodes: registration + heartbeats
    def _version(self, client):
        if self.kubelet_version is None:
            try:
                self.kubelet_version = client.get("/version")["gitVersion"]
            except Exception:  # noqa: BLE001
                return "v0.0.0"
        return self.kubelet_version

    def _node_status(self, node, now):
        conds = []
        for t, reason, msg in (("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory "
                                "available"), ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk "
                                               "pressure"),
                               ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                               ("Ready", "KubeletReady", "kubelet is posting ready status")):
            conds.append({"type": t, "status": "True" if t == "Ready" else "False", "reason": reason,
                          "message": msg, "lastHeartbeatTime": now, "lastTransitionTime": now})
        res = {"cpu": "4", "memory": "8148324Ki", "pods": "110", "ephemeral-storage": "61255492Ki"}
        return {"conditions": conds, "addresses": [{"type": "InternalIP", "address": node.ip},
                                                   {"type": "Hostname", "address": node.name}],
                "capacity": dict(res), "allocatable": dict(res),
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {"machineID": hashlib.md5(node.name.encode()).hexdigest(),
                             "systemUUID": hashlib.md5(("uuid" + node.name).encode()).hexdigest(),
                             "bootID": hashlib.md5(("boot" + node.name).encode()).hexdigest(),
                             "kernelVersion": "6.1.0-realk8s", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "containerRuntimeVersion": "containerd://1.6.20", "kubeletVersion": "",
                             "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"}}

    def _register(self, node, client):
        now = now_rfc3339()
        status = self._node_status(node, now)
        ver = self._version(client)
        status["nodeInfo"]["kubeletVersion"] = status["nodeInfo"]["kubeProxyVersion"] = ver
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": node.name, "labels": {"kubernetes.io/hostname": node.name,
                                                           "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
                                                           "beta.kubernetes.io/os": "linux",
                                                           "beta.kubernetes.io/arch": "amd64"}},
                "spec": {}, "status": status}
        st, obj = client.request("POST", "/api/v1/nodes", body)
        if st == 409:
            self._post_status(node, client, status)
        elif st not in (200, 201):
            raise ApiError("POST", "/api/v1/nodes", st, obj)
        node.registered = True
        node.last_status = time.time()

    def _post_status(self, node, client, status=None):
        status = status or self._node_status(node, now_rfc3339())
        status["nodeInfo"]["kubeletVersion"] = status["nodeInfo"]["kubeProxyVersion"] = self._version(client)
        cur = self.node_informer.get("", node.name) if self.node_informer else None
        if cur is not None:  # keep lastTransitionTime of unchanged conditions
            old = {c.get("type"): c for c in (cur.get("status") or {}).get("conditions") or []}
            for c in status["conditions"]:
                o = old.get(c["type"])
                if o and o.get("status") == c["status"]:
                    c["lastTransitionTime"] = o.get("lastTransitionTime", c["lastTransitionTime"])
        client.patch("/api/v1/nodes/%s/status" % node.name, {"status": status}, kind="strategic")
        node.last_status = time.time()
        self.counters["status"] += 1

    def _renew_lease(self, node, client):
        path = "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s" % (LEASE_NS, node.name)
        spec = {"holderIdentity": node.name, "leaseDurationSeconds": 40, "renewTime": micro_time()}
        st, obj = client.request("PATCH", path, {"spec": spec}, content_type="application/merge-patch+json")
        if st == 404:
            owner = None
            cur = self.node_informer.get("", node.name) if self.node_informer else None
            if cur is not None:
                owner = [{"apiVersion": "v1", "kind": "Node", "name": node.name, "uid": _meta(cur).get("uid")}]
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": node.name, "namespace": LEASE_NS}, "spec": spec}
            if owner:
                body["metadata"]["ownerReferences"] = owner
            st, obj = client.request("POST", "/apis/coordination.k8s.io/v1/namespaces/%s/leases" % LEASE_NS, body)
        if st not in (200, 201):
            raise ApiError("PATCH", path, st, obj)
        node.last_lease = time.time()
        self.counters["lease"] += 1

    def _heartbeat(self, node):
        try:
            client = self.node_client(node.name)
            if not node.registered:
                self._register(node, client)
            now = time.time()
            if now - node.last_lease >= self.lease_renew:
                self._renew_lease(node, client)
            cur = self.node_informer.get("", node.name) if self.node_informer else None
            if now - node.last_status >= self.status_interval or (cur is not None and not node_ready(cur)):
                self._post_status(node, client)
            node.last_ok = time.time()
        except ApiError as e:
            node.errors += 1
            node.last_error = str(e)
            self.counters["errors"] += 1
            if e.status == 401 and self.auto_rejoin:
                self.rejoin([node.name])
        except Exception as e:  # noqa: BLE001 - apiserver restarting etc.
            node.errors += 1
            node.last_error = repr(e)

    def _heartbeats(self):
        last_resync = time.monotonic()
        while not self._stop.is_set():
            for node in list(self.nodes.values()):
                if self._stop.is_set():
                    return
                self._heartbeat(node)
            if time.monotonic() - last_resync >= self.resync and self.pods is not None:
                last_resync = time.monotonic()
                self._resync()
            self._wake_ev.wait(1.0)
            self._wake_ev.clear()

    def _resync(self):
        """Re-queue the pods that still need something (a work item may have been dropped after its retries
        while the apiserver was down)."""
        for pod in self.pods.list():
            if _needs_work(pod):
                self._on_pod("MODIFIED", pod)
        for key in list(self._mirrors):
            if self.pods.get(*key) is None:
                self._recreate_mirror(key)

    # ------------------------------------------------------------------ informer events
    def _on_node(self, etype, node):
        if etype != "DELETED" and node_ready(node):
            for key in list(self._pending_since):
                self._sched_q.add(key)
        name = _meta(node).get("name")
        if etype == "DELETED" and name in self.nodes:
            self.nodes[name].registered = False
            self._wake()

    def _on_pod(self, etype, pod):
        m = _meta(pod)
        key = (m.get("namespace"), m.get("name"))
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        with self._lock:
            old = self._pod_node.pop(key, None)
            if old:
                self._load[old] -= 1
            if node and etype != "DELETED":
                self._pod_node[key] = node
                self._load[node] = self._load.get(node, 0) + 1
        if etype == "DELETED":
            self._pending_since.pop(key, None)
            self._deleting_due.pop(key, None)
            self._bound_seen.pop(key, None)
            if key in self._mirrors and self._timers is not None:  # the kubelet re-creates a static pod's mirror
                self._timers.call_later(self.ready_delay, lambda: self._recreate_mirror(key))
            return
        if not node:
            if not m.get("deletionTimestamp") and spec.get("schedulerName", "default-scheduler") == \
                    "default-scheduler":
                self._pending_since.setdefault(key, time.monotonic())
                self._sched_q.add(key)
            return
        self._pending_since.pop(key, None)
        if node in self.nodes:
            self._queues[hash(key) % len(self._queues)].add(key)

    # ------------------------------------------------------------------ scheduler
    def _schedule(self, key):
        pod = self.pods.get(*key)
        if pod is None or (pod.get("spec") or {}).get("nodeName") or _meta(pod).get("deletionTimestamp"):
            self._pending_since.pop(key, None)
            return None
        fits = [n for n in self.node_informer.list() if pod_fits(pod, n)]
        if not fits:
            return None  # retried when a node turns Ready (_on_node)
        with self._lock:
            target = min(fits, key=lambda n: (self._load.get(_meta(n)["name"], 0), _meta(n)["name"]))
        name = _meta(target)["name"]
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": key[1], "namespace": key[0], "uid": _meta(pod).get("uid")},
                "target": {"apiVersion": "v1", "kind": "Node", "name": name}}
        st, obj = self.scheduler_client().request(
            "POST", "/api/v1/namespaces/%s/pods/%s/binding" % key, body)
        if st in (200, 201):
            with self._lock:  # counted now; the watch event of the binding moves nothing
                if key not in self._pod_node:
                    self._pod_node[key] = name
                    self._load[name] = self._load.get(name, 0) + 1
            self.counters["bind"] += 1
            self._pending_since.pop(key, None)
            return None
        if st in (404, 409):  # gone or already bound
            return None
        raise ApiError("POST", "binding %s/%s" % key, st, obj)

    # ------------------------------------------------------------------ kubelet
    def _pod_ip(self, node):
        with self._lock:
            node.pod_ips += 1
            n = node.pod_ips
        return "10.%d.%d.%d" % (100 + node.index % 150, (n // 250) % 256, 1 + n % 250)

    def _sync_pod(self, key):
        pod = self.pods.get(*key)
        if pod is None:
            return None
        m = _meta(pod)
        spec = pod.get("spec") or {}
        node = self.nodes.get(spec.get("nodeName"))
        if node is None:
            return None
        if m.get("deletionTimestamp"):
            if m.get("finalizers"):
                return None
            now = time.monotonic()
            due = deletion_due(m, now, self.grace_cap, self._deleting_due.get(key), m.get("uid"))
            self._deleting_due[key] = due
            if now < due[0]:
                return due[0] - now
            st, obj = self.node_client(node.name).request(
                "DELETE", "/api/v1/namespaces/%s/pods/%s" % key,
                {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                 "preconditions": {"uid": m.get("uid")}})
            if st in (200, 202):
                self.counters["finalized"] += 1
            elif st not in (404, 409):
                raise ApiError("DELETE", "pod %s/%s" % key, st, obj)
            self._deleting_due.pop(key, None)
            return None
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") or (phase == "Running" and pod_is_ready(pod)):
            return None
        seen = self._bound_seen.setdefault(key, time.monotonic())
        wait = seen + self.ready_delay - time.monotonic()
        if wait > 0:
            return wait
        status = running_pod_status(copy.deepcopy(pod), node.ip, self._pod_ip(node), now_rfc3339())
        st, obj = self.node_client(node.name).request(
            "PATCH", "/api/v1/namespaces/%s/pods/%s/status" % key,
            {"metadata": {"uid": m.get("uid")}, "status": status}, content_type="application/merge-patch+json")
        if st == 200:
            self.counters["running"] += 1
            self._bound_seen.pop(key, None)
            return None
        if st in (404, 409, 422):  # gone / replaced by a pod with a new uid
            return None
        raise ApiError("PATCH", "pod status %s/%s" % key, st, obj)

    # ------------------------------------------------------------------ CSRs
    def create_serving_csr(self, node, forged=False, kind=None, name=None, other=None, requester=None,
                           dns=None, email=None, uri=None):
        """Create a CSR for `node` (as that node unless said otherwise) and return it as the server answered.
        kind "valid" (default; forged=True picks "otherNodeIP"): signer kubernetes.io/kubelet-serving,
        CN=system:node:<node>, O=system:nodes, usages digital signature/key encipherment/server auth, SANs = the
        node's Hostname and InternalIP. Forged kinds (CSR_KINDS): otherNodeIP / otherNodeDNS (adds the IP / name of
        `other`, default another simulated node), foreignDNS (adds `dns`, default evil.example.com),
        nonNodeRequester (created by `requester`, a Client of a non-node user), clientUsages (client auth),
        emailSAN, uriSAN, cnMismatch (CN of `other`), noOrg, noSANs; clientKubelet is a client-certificate CSR
        (signer kube-apiserver-client-kubelet) of the node itself."""
        client, body = self.serving_csr_request(node, forged=forged, kind=kind, name=name, other=other,
                                                requester=requester, dns=dns, email=email, uri=uri)
        return client.create("/apis/certificates.k8s.io/v1/certificatesigningrequests", body)

    def serving_csr_request(self, node, forged=False, kind=None, name=None, other=None, requester=None,
                            dns=None, email=None, uri=None):
        """What create_serving_csr sends, built but not sent: (the Client it creates with, the CSR body) — so a
        benchmark can time the creation alone."""
        kind = kind or ("otherNodeIP" if forged else "valid")
        if other is None:
            other = next((x for x in sorted(self.nodes) if x != node), node)
        f = csrgen.kind_fields(kind, node, self.nodes[node].ip, other, self.nodes[other].ip, dns=dns,
                               email=email or "root@%s.example" % node, uri=uri)
        client = self.node_client(node)
        if kind == "nonNodeRequester":
            if requester is None:
                raise ValueError("nonNodeRequester needs requester= (a Client of a non-node user)")
            client = requester
        pem = csrgen.build_csr(csrgen.key_for("realk8s-" + node), cn=f["cn"], orgs=f["orgs"], dns=f["dns"],
                               ips=f["ips"], emails=f["emails"], uris=f["uris"])
        meta = {"name": name} if name else {"generateName": "csr-"}
        body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": meta,
                "spec": {"request": csrgen.csr_request_b64(pem), "signerName": f["signer"], "usages": f["usages"]}}
        return client, body

    def _recreate_mirror(self, key):
        if self._stop.is_set() or self.pods.get(*key) is not None:
            return
        try:
            self._create_mirror(key)
        except Exception as e:  # noqa: BLE001 - retried by the next resync
            self.counters["errors"] += 1
            self.nodes[self._mirrors[key][0]].last_error = repr(e)

    # ------------------------------------------------------------------ mirror pods
    def create_mirror_pod(self, node, namespace, name, image, labels=None):
        """A static pod's mirror (annotation kubernetes.io/config.mirror, owned by the Node), created by the
        node itself as a kubelet does; re-created by the simulator when deleted. Returns the pod."""
        spec = {"nodeName": node, "containers": [{"name": name.rsplit("-" + node, 1)[0] or "c", "image": image}],
                "priorityClassName": "system-node-critical", "hostNetwork": True}
        h = hashlib.sha256(("%s/%s/%s" % (namespace, name, image)).encode()).hexdigest()[:32]
        ann = {"kubernetes.io/config.source": "file", "kubernetes.io/config.hash": h, ANN_MIRROR: h,
               "kubernetes.io/config.seen": now_rfc3339()}
        md = {"name": name, "namespace": namespace, "labels": dict(labels or {}), "annotations": ann}
        with self._lock:
            self._mirrors[(namespace, name)] = (node, copy.deepcopy(md), copy.deepcopy(spec))
        return self._create_mirror((namespace, name))

    def _create_mirror(self, key):
        node, md, spec = self._mirrors[key]
        client = self.node_client(node)
        md = copy.deepcopy(md)
        cur = self.node_informer.get("", node) if self.node_informer else None
        if cur is None:
            cur = client.get("/api/v1/nodes/%s" % node)
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": _meta(cur)["uid"],
                                  "controller": True}]
        st, obj = client.request("POST", "/api/v1/namespaces/%s/pods" % key[0],
                                 {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": copy.deepcopy(spec)})
        if st not in (201, 409):
            raise ApiError("POST", "mirror pod %s/%s" % key, st, obj)
        return obj

    # ------------------------------------------------------------------ waiting helpers
    def wait_nodes_ready(self, timeout=60, names=None):
        """Wait until every simulated node (or `names`) had a successful heartbeat since its last (re-)join and
        is Ready without node.kubernetes.io/ taints as the server reports it. Raises AssertionError on timeout."""
        names = list(names or self.nodes)
        deadline = time.time() + timeout
        while time.time() < deadline:
            ok = True
            for n in names:
                cur = self.node_informer.get("", n) if self.node_informer else None
                if self.nodes[n].last_ok <= self.nodes[n].joined_at:
                    ok = False
                    break
                if cur is None or not node_ready(cur) or any(
                        t.get("key", "").startswith("node.kubernetes.io/")
                        for t in (cur.get("spec") or {}).get("taints") or []):
                    ok = False
                    break
            if ok:
                return
            time.sleep(0.2)
        raise AssertionError("nodes not Ready within %ss: %s" % (timeout, {
            n: (self.nodes[n].last_error, (self.node_informer.get("", n) or {}).get("spec")) for n in names}))

    def node_ip(self, name):
        return self.nodes[name].ip


def main(argv=None):
    ap = argparse.ArgumentParser(prog="realk8s.kubelet", description="kubelet + scheduler simulator")
    ap.add_argument("--kubeconfig-dir", required=True,
                    help="cluster root: scheduler.conf, nodes/<n>/kubelet.conf (issued from pki/ when missing)")
    ap.add_argument("--nodes", required=True, help="comma list of node names")
    ap.add_argument("--ready-delay", type=float, default=0.3)
    ap.add_argument("--grace-cap", type=float, default=1.0)
    ap.add_argument("--auto-rejoin", action="store_true", help="re-join a node whose credentials get 401")
    args = ap.parse_args(argv)
    sim = KubeletSim(args.kubeconfig_dir, [n for n in args.nodes.split(",") if n], ready_delay=args.ready_delay,
                     grace_cap=args.grace_cap, auto_rejoin=args.auto_rejoin)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    rejoin = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: rejoin.set())
    sim.start()
    print("READY nodes=%s" % ",".join(sim.nodes), flush=True)
    try:
        while not done.wait(0.5):
            if rejoin.is_set():
                rejoin.clear()
                sim.rejoin()
                print("REJOINED", flush=True)
    finally:
        sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
