"""The cluster's own controllers, simplified but shaped like the real ones (kube-controller-manager + kubelet).

Controllers(sim, **options) is fed by store listeners (sim.store.add_listener) and keeps an informer-like cache of
the resources it needs, indexed by owner uid / node name / namespace / service account, so no event causes a full
scan.  Each controller has its own work queue + worker thread; writes go through the Store API (create/mutate/
delete/finalize_delete) and are written through to the cache so controllers never act twice on stale data.

Options (constructor keywords; unknown ones are ignored; defaults in DEFAULTS):
  profile          "modern" (>= 1.24: no auto-created token Secrets, projected kube-api-access volume,
                   kube-root-ca.crt publisher) or "legacy" (< 1.24: one `<sa>-token-xxxxx` Secret per SA,
                   recreated when deleted; Secret volume in pods)
  kubelet_delay    seconds until a scheduled pod turns Running/Ready (0 = immediately)
  grace_cap        a deleting pod is finalized after min(deletionGracePeriodSeconds, grace_cap) seconds; default
                   = kubelet_delay, so a 30 s grace period costs tests only kubelet_delay
  token_delay      tokens controller reaction time (fill data.token, create legacy Secrets)
  token_rate       tokens controller throughput: token Secrets refilled per second (default 0 = unlimited;
                   a real 1.19 controller-manager refills about 9 per second)
  csr_sign_delay   seconds between approval and status.certificate
  trust_resync     period of the apiserver trust controller (extension-apiserver-authentication)
  stale_apiserver  True: simulate a second kube-apiserver still running with the OLD CA that re-adds it on every
                   sync (every stale_interval seconds); switch at run time with set_stale_apiserver()
  node_down        iterable of node names that are down from the start (also sim.down_nodes / set_node_down())
  csr_auto_approve True: emulate the kcm approver for kube-apiserver-client-kubelet CSRs of the node itself when a
                   ClusterRoleBinding to ...:selfnodeclient exists
  eviction_v1      accept policy/v1 Eviction bodies (default: True for modern, False for legacy = 1.19 behaviour)
"""

import base64
import copy
import hashlib
import heapq
import json
import logging
import random
import subprocess
import threading
import time
from collections import deque

from . import csrgen, selectors

log = logging.getLogger("apisim.controllers")

DEFAULTS = {
    "profile": "modern",
    "kubelet_delay": 1.0,
    "grace_cap": None,
    "token_delay": 0.2,
    "csr_sign_delay": 0.3,
    "trust_resync": 60.0,
    "stale_apiserver": False,
    "stale_interval": 5.0,
    "node_down": (),
    "csr_auto_approve": True,
    "eviction_v1": None,
    "default_node": "sim-node-1",
}

SA_TOKEN = "kubernetes.io/service-account-token"
ANN_SA_NAME = "kubernetes.io/service-account.name"
ANN_SA_UID = "kubernetes.io/service-account.uid"
ANN_MIRROR = "kubernetes.io/config.mirror"
ANN_REVISION = "deployment.kubernetes.io/revision"
ANN_COMPLETE_AFTER = "apisim.kubemend.io/complete-after-seconds"
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
EXT_AUTH_NS, EXT_AUTH_NAME = "kube-system", "extension-apiserver-authentication"
SELFNODECLIENT_ROLE = "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"

RES_PODS = "pods"
RES_SECRETS = "secrets"
RES_SA = "serviceaccounts"
RES_NODES = "nodes"
RES_NS = "namespaces"
RES_CM = "configmaps"
RES_DEPLOY = "apps/deployments"
RES_RS = "apps/replicasets"
RES_STS = "apps/statefulsets"
RES_DS = "apps/daemonsets"
RES_JOB = "batch/jobs"
RES_PDB = "policy/poddisruptionbudgets"
RES_CSR = "certificates.k8s.io/certificatesigningrequests"
RES_CRB = "rbac.authorization.k8s.io/clusterrolebindings"
CACHED = (RES_PODS, RES_SECRETS, RES_SA, RES_NODES, RES_NS, RES_DEPLOY, RES_RS, RES_STS, RES_DS, RES_JOB, RES_PDB,
          RES_CSR, RES_CRB)
WORKLOADS = (RES_DEPLOY, RES_RS, RES_STS, RES_DS, RES_JOB)
# namespaced resources the namespace controller empties (plus every resource seen in events)
NAMESPACED_DEFAULT = ["pods", "secrets", "serviceaccounts", "configmaps", "events", "events.k8s.io/events",
                      "apps/deployments", "apps/replicasets", "apps/statefulsets", "apps/daemonsets", "batch/jobs",
                      "policy/poddisruptionbudgets", "coordination.k8s.io/leases", "rbac.authorization.k8s.io/roles",
                      "rbac.authorization.k8s.io/rolebindings"]
CLUSTER_SCOPED = {"nodes", "namespaces", RES_CSR, RES_CRB, "rbac.authorization.k8s.io/clusterroles",
                  "apiextensions.k8s.io/customresourcedefinitions"}

ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
_rand = random.Random()


def rand5(rng=None):
    r = rng or _rand
    return "".join(r.choice(ALPHANUMS) for _ in range(5))


def now_rfc3339(t=None):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if t is None else t))


def parse_rfc3339(s):
    import calendar
    try:
        return calendar.timegm(time.strptime(s[:19], "%Y-%m-%dT%H:%M:%S"))
    except (TypeError, ValueError):
        return None


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def unb64(s):
    try:
        return base64.b64decode(s or "")
    except Exception:  # noqa: BLE001
        return b""


def meta(obj):
    return obj.get("metadata") or {}


def rv_int(obj):
    try:
        return int(meta(obj).get("resourceVersion") or 0)
    except (TypeError, ValueError):
        return 0


def okey(obj):
    m = meta(obj)
    return (m.get("namespace") or "", m.get("name") or "")


def controller_ref(obj):
    for ref in meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def owner_ref(obj, api_version, kind):
    m = meta(obj)
    return {"apiVersion": api_version, "kind": kind, "name": m["name"], "uid": m["uid"], "controller": True,
            "blockOwnerDeletion": True}


def int_or_percent(value, total, round_up):
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    s = str(value)
    if s.endswith("%"):
        try:
            pct = int(s[:-1])
        except ValueError:
            return 0
        v = pct * total
        return (v + 99) // 100 if round_up else v // 100
    try:
        return int(s)
    except ValueError:
        return 0


def selector_matches(selector, labels):
    """metav1.LabelSelector semantics. An empty/None selector matches everything (callers decide otherwise)."""
    if not selector:
        return True
    return selectors.selector_from_match_labels(selector)(labels)


def selector_empty(selector):
    return not selector or (not selector.get("matchLabels") and not selector.get("matchExpressions"))


def fnv32a(data):
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template, collision_count=0):
    """pod-template-hash like the real one (fnv32a + SafeEncodeString), over a canonical JSON of the template."""
    t = copy.deepcopy(template or {})
    lbl = (t.get("metadata") or {}).get("labels")
    if lbl:
        lbl.pop("pod-template-hash", None)
        lbl.pop("controller-revision-hash", None)
    data = json.dumps(t, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return "".join(ALPHANUMS[b % len(ALPHANUMS)] for b in str(fnv32a(data)).encode())


def templates_equal(a, b):
    def strip(t):
        t = copy.deepcopy(t or {})
        md = t.setdefault("metadata", {})
        md.pop("creationTimestamp", None)
        lbl = md.get("labels")
        if lbl:
            lbl.pop("pod-template-hash", None)
        return t
    return strip(a) == strip(b)


def pod_is_ready(pod):
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def pod_is_active(pod):
    return not meta(pod).get("deletionTimestamp") and (pod.get("status") or {}).get("phase") not in (
        "Succeeded", "Failed")


def pod_phase(pod):
    return (pod.get("status") or {}).get("phase") or "Pending"


def set_condition(conds, ctype, status, reason, message, now, with_probe=False, update_time=True):
    """Insert/update a condition keeping lastTransitionTime when the status does not change."""
    for c in conds:
        if c.get("type") == ctype:
            if c.get("status") != status:
                c["lastTransitionTime"] = now
            if update_time and (c.get("reason") != reason or c.get("message") != message
                                or c.get("status") != status) and "lastUpdateTime" in c:
                c["lastUpdateTime"] = now
            c["status"] = status
            if reason is not None:
                c["reason"] = reason
            if message is not None:
                c["message"] = message
            return conds
    c = {"type": ctype, "status": status}
    if with_probe:
        c["lastProbeTime"] = None
    if update_time:
        c["lastUpdateTime"] = now
    c["lastTransitionTime"] = now
    if reason is not None:
        c["reason"] = reason
    if message is not None:
        c["message"] = message
    conds.append(c)
    return conds


def _omit_zero(status, keys):
    for k in keys:
        if not status.get(k):
            status.pop(k, None)
    return status


# --------------------------------------------------------------------------- scheduling infrastructure

class Timers:
    """One thread running delayed callbacks (heap)."""

    def __init__(self):
        self._heap = []
        self._cv = threading.Condition()
        self._stop = False
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="apisim-timers", daemon=True)
        self._thread.start()

    def call_later(self, delay, fn):
        with self._cv:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), self._seq, fn))
            self._cv.notify()

    def stop(self):
        with self._cv:
            self._stop = True
            self._cv.notify()

    def _run(self):
        while True:
            with self._cv:
                while not self._stop and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = None if not self._heap else self._heap[0][0] - time.monotonic()
                    self._cv.wait(timeout)
                if self._stop:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                fn()
            except Exception:  # noqa: BLE001
                log.exception("timer callback failed")


class WorkQueue:
    """Deduplicating queue of keys processed by one worker thread."""

    def __init__(self, name, handler, timers):
        self.name = name
        self.handler = handler
        self.timers = timers
        self._cv = threading.Condition()
        self._queue = deque()
        self._pending = set()
        self._processing = set()
        self._dirty = set()
        self._stop = False
        self._retries = {}
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="apisim-ctl-" + self.name, daemon=True)
        self._thread.start()

    def stop(self):
        with self._cv:
            self._stop = True
            self._cv.notify_all()

    def add(self, key):
        with self._cv:
            if key in self._processing:
                self._dirty.add(key)
                return
            if key in self._pending:
                return
            self._pending.add(key)
            self._queue.append(key)
            self._cv.notify()

    def add_after(self, key, delay):
        if delay <= 0:
            self.add(key)
        else:
            self.timers.call_later(delay, lambda: self.add(key))

    def idle(self):
        with self._cv:
            return not self._queue and not self._processing

    def _run(self):
        while True:
            with self._cv:
                while not self._stop and not self._queue:
                    self._cv.wait()
                if self._stop:
                    return
                key = self._queue.popleft()
                self._pending.discard(key)
                self._processing.add(key)
            requeue = None
            try:
                requeue = self.handler(key)
                self._retries.pop(key, None)
            except Exception as e:  # noqa: BLE001
                n = self._retries.get(key, 0) + 1
                self._retries[key] = n
                if n <= 8:
                    log.debug("controller %s: %r failed (%s), retry %d", self.name, key, e, n)
                    requeue = min(0.05 * (2 ** n), 5.0)
                else:
                    log.warning("controller %s: giving up on %r: %s", self.name, key, e)
                    self._retries.pop(key, None)
            with self._cv:
                self._processing.discard(key)
                if key in self._dirty:
                    self._dirty.discard(key)
                    if key not in self._pending:
                        self._pending.add(key)
                        self._queue.append(key)
                        self._cv.notify()
            if requeue is not None and requeue is not False:
                self.add_after(key, float(requeue))


# --------------------------------------------------------------------------- the controllers

class Controllers:
    @property
    def profile(self):
        """The server's profile (one truth: the Sim's, which also selects the served API versions)."""
        return getattr(self.sim, "profile", None) or self._profile

    @profile.setter
    def profile(self, value):
        self._profile = value
        if hasattr(self.sim, "registry"):
            self.sim.profile = value

    def eviction_v1(self):
        """policy/v1 Eviction bodies accepted: option eviction_v1, else the profile's (1.26 yes, 1.19 no)."""
        if self.opts.get("eviction_v1") is not None:
            return bool(self.opts["eviction_v1"])
        return self.profile != "legacy"

    def __init__(self, sim, **options):
        self.sim = sim
        self.store = sim.store
        self.pki = getattr(sim, "pki", None)
        opts = dict(DEFAULTS)
        for k in DEFAULTS:
            v = getattr(sim, k, None)
            if v is not None and not callable(v):
                opts[k] = v
        import os
        for part in filter(None, os.environ.get("APISIM_CONTROLLER_OPTS", "").split(",")):
            k, _, v = part.partition("=")
            k = k.strip()
            if k not in DEFAULTS:
                raise ValueError("APISIM_CONTROLLER_OPTS: unknown option %r" % k)
            if k == "profile":
                opts[k] = v
            elif k in ("stale_apiserver", "csr_auto_approve", "eviction_v1"):
                opts[k] = v.lower() in ("1", "true", "yes", "on")
            elif k == "default_node":
                opts[k] = v
            elif k == "node_down":
                opts[k] = [n for n in v.split(":") if n]
            else:
                opts[k] = float(v)
        for k, v in options.items():
            if v is not None:
                opts[k] = v
        if opts["profile"] not in ("modern", "legacy"):
            raise ValueError("profile must be modern or legacy")
        self.opts = opts
        self._profile = None
        self.profile = opts["profile"]
        self.kubelet_delay = float(opts["kubelet_delay"])
        gc = opts["grace_cap"]
        self.grace_cap = float(self.kubelet_delay if gc is None else gc)
        self.stale_apiserver = bool(opts["stale_apiserver"])
        for n in opts["node_down"] or ():
            self._down_set().add(n)
        self._lock = threading.RLock()
        self._token_lock = threading.RLock()
        self.cache = {r: {} for r in CACHED}
        self.by_uid = {}                 # uid -> (res, key) for workloads
        self.pods_by_owner = {}          # owner uid -> set(key)
        self.pods_by_node = {}           # node -> set(key)
        self.pods_by_ns = {}             # ns -> set(key)
        self.rs_by_owner = {}            # deployment uid -> set(key)
        self.tokens_by_sa = {}           # (ns, sa) -> set(secret name)
        self.pdbs_by_ns = {}             # ns -> set(key)
        self.seen_resources = set(NAMESPACED_DEFAULT)
        self._started = False
        self._buffer = []
        self._listening = False
        self._down_snapshot = frozenset()
        self._not_ready_since = {}       # pod key -> monotonic time first seen scheduled & not ready
        self._deleting_due = {}          # pod key -> (monotonic due, deletionTimestamp)
        self._mirror_templates = {}
        self._ip_counter = 0
        self._sched_rr = 0
        self._ca_b64 = None
        self._ca_b64_src = None
        self._cert_expiry = {}
        self.timers = None
        self.queues = {}

    # ---- lifecycle
    def _down_set(self):
        """Down node names: store.down_nodes (A's /_sim/nodes/<n>/down), else sim.down_nodes."""
        s = getattr(self.store, "down_nodes", None)
        if s is None:
            s = getattr(self.sim, "down_nodes", None)
        if s is None:
            s = set()
            try:
                self.sim.down_nodes = s
            except AttributeError:
                pass
        return s

    def start(self):
        if self._started:
            return
        self.timers = Timers()
        for name, fn in (("tokens", self._sync_tokens), ("serviceaccounts", self._sync_serviceaccount),
                         ("replicaset", self._sync_replicaset), ("deployment", self._sync_deployment),
                         ("statefulset", self._sync_statefulset), ("daemonset", self._sync_daemonset),
                         ("job", self._sync_job), ("kubelet", self._sync_pod), ("node", self._sync_node),
                         ("disruption", self._sync_pdb), ("csr", self._sync_csr), ("trust", self._sync_trust),
                         ("namespace", self._sync_namespace), ("rootca", self._sync_rootca)):
            self.queues[name] = WorkQueue(name, fn, self.timers)
        with self._lock:
            self._listening = True
            self._buffer = []
        self.store.add_listener(self._on_event)
        lister = getattr(self.store, "list_refs", None) or self.store.list  # stored objects are immutable
        for res in CACHED:
            try:
                items = lister(res)
            except Exception:  # noqa: BLE001 - resource not served by this store
                items = []
            with self._lock:
                for obj in items:
                    self._cache_put(res, obj)
        with self._lock:
            buffered, self._buffer = self._buffer, None
            for etype, res, obj in buffered:
                self._apply_event(etype, res, obj)
            self._started = True
        if self.opts.get("default_node") and not self.cache[RES_NODES]:
            # a cluster without any Node (no scenario) still runs pods: one Ready node like a kind cluster
            name = self.opts["default_node"]
            try:
                self._create(RES_NODES, {"apiVersion": "v1", "kind": "Node", "metadata": {
                    "name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                             "kubernetes.io/arch": "amd64"}},
                    "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.1"},
                                             {"type": "Hostname", "address": name}]}})
            except Exception as e:  # noqa: BLE001
                if getattr(e, "code", None) != 409:
                    raise
        if self.pki is not None and hasattr(self.pki, "on_rebuild"):
            self.pki.on_rebuild(self._on_pki_rebuild)
        for q in self.queues.values():
            q.start()
        self._enqueue_all()
        self.timers.call_later(0.5, self._poll_down_nodes)
        self.timers.call_later(self.opts["trust_resync"], self._trust_tick)
        if self.stale_apiserver:
            self.timers.call_later(self.opts["stale_interval"], self._stale_tick)

    def stop(self):
        for q in self.queues.values():
            q.stop()
        if self.timers:
            self.timers.stop()
        self._started = False

    def wait_idle(self, timeout=10.0):
        """Tests: wait until every queue is empty (delayed work may still be pending)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(q.idle() for q in self.queues.values()):
                return True
            time.sleep(0.02)
        return False

    def _enqueue_all(self):
        with self._lock:
            snap = {r: list(self.cache[r].keys()) for r in CACHED}
            secrets = [k for k, s in self.cache[RES_SECRETS].items() if s.get("type") == SA_TOKEN]
        for k in secrets:
            self.queues["tokens"].add(k)
        for k in snap[RES_SA]:
            self.queues["serviceaccounts"].add(("sa",) + k)
        for k in snap[RES_NS]:
            self.queues["serviceaccounts"].add(("ns", k[1]))
            self.queues["namespace"].add(k[1])
            self.queues["rootca"].add(k[1])
        for res, qn in ((RES_RS, "replicaset"), (RES_DEPLOY, "deployment"), (RES_STS, "statefulset"),
                        (RES_DS, "daemonset"), (RES_JOB, "job"), (RES_PDB, "disruption")):
            for k in snap[res]:
                self.queues[qn].add(k)
        for k in snap[RES_PODS]:
            self.queues["kubelet"].add(k)
        for k in snap[RES_NODES]:
            self.queues["node"].add(k[1])
        for k in snap[RES_CSR]:
            self.queues["csr"].add(k[1])
        self.queues["trust"].add("sync")

    # ---- cache
    def _on_event(self, etype, res, obj):
        with self._lock:
            if res not in CLUSTER_SCOPED and meta(obj).get("namespace"):
                self.seen_resources.add(res)
            if res not in self.cache and not (res == RES_CM and meta(obj).get("name") in (
                    EXT_AUTH_NAME, "kube-root-ca.crt")):
                return
            if self._buffer is not None:
                self._buffer.append((etype, res, obj))
                return
            self._apply_event(etype, res, obj)

    def _apply_event(self, etype, res, obj):
        if res == RES_CM:
            self._dispatch(etype, res, obj, None)
            return
        key = okey(obj)
        old = self.cache[res].get(key)
        if etype == "DELETED":
            if old is not None and rv_int(obj) >= rv_int(old):
                self._cache_remove(res, key)
            elif old is not None:
                return
        else:
            if old is not None and rv_int(old) > rv_int(obj):
                return
            self._cache_put(res, obj)
        self._dispatch(etype, res, obj, old)

    def _cache_put(self, res, obj):
        key = okey(obj)
        old = self.cache[res].get(key)
        if old is not None and rv_int(old) > rv_int(obj):
            return
        if old is not None:
            self._unindex(res, key, old)
        self.cache[res][key] = obj
        self._index(res, key, obj)

    def _cache_remove(self, res, key):
        old = self.cache[res].pop(key, None)
        if old is not None:
            self._unindex(res, key, old)

    def _write(self, res, obj):
        """Write-through of an object returned by the store."""
        if obj is None or res not in self.cache:
            return obj
        with self._lock:
            self._cache_put(res, obj)
        return obj

    def _index(self, res, key, obj):
        m = meta(obj)
        if res in WORKLOADS and m.get("uid"):
            self.by_uid[m["uid"]] = (res, key)
        if res == RES_PODS:
            ref = controller_ref(obj)
            if ref:
                self.pods_by_owner.setdefault(ref.get("uid"), set()).add(key)
            node = (obj.get("spec") or {}).get("nodeName")
            if node:
                self.pods_by_node.setdefault(node, set()).add(key)
            self.pods_by_ns.setdefault(key[0], set()).add(key)
        elif res == RES_RS:
            ref = controller_ref(obj)
            if ref:
                self.rs_by_owner.setdefault(ref.get("uid"), set()).add(key)
        elif res == RES_SECRETS and obj.get("type") == SA_TOKEN:
            sa = (m.get("annotations") or {}).get(ANN_SA_NAME, "")
            self.tokens_by_sa.setdefault((key[0], sa), set()).add(key[1])
        elif res == RES_PDB:
            self.pdbs_by_ns.setdefault(key[0], set()).add(key)

    def _unindex(self, res, key, obj):
        m = meta(obj)

        def drop(index, k, v):
            s = index.get(k)
            if s is not None:
                s.discard(v)
                if not s:
                    del index[k]
        if res in WORKLOADS and m.get("uid") and self.by_uid.get(m["uid"], (None, None))[1] == key:
            del self.by_uid[m["uid"]]
        if res == RES_PODS:
            ref = controller_ref(obj)
            if ref:
                drop(self.pods_by_owner, ref.get("uid"), key)
            node = (obj.get("spec") or {}).get("nodeName")
            if node:
                drop(self.pods_by_node, node, key)
            drop(self.pods_by_ns, key[0], key)
        elif res == RES_RS:
            ref = controller_ref(obj)
            if ref:
                drop(self.rs_by_owner, ref.get("uid"), key)
        elif res == RES_SECRETS and obj.get("type") == SA_TOKEN:
            sa = (m.get("annotations") or {}).get(ANN_SA_NAME, "")
            drop(self.tokens_by_sa, (key[0], sa), key[1])
        elif res == RES_PDB:
            drop(self.pdbs_by_ns, key[0], key)

    def get(self, res, ns, name):
        with self._lock:
            return self.cache[res].get((ns or "", name))

    def owned_pods(self, uid):
        with self._lock:
            return [self.cache[RES_PODS][k] for k in self.pods_by_owner.get(uid, ()) if k in self.cache[RES_PODS]]

    # ---- event dispatch (listener thread: only enqueue)
    def _dispatch(self, etype, res, obj, old):
        q = self.queues
        key = okey(obj)
        m = meta(obj)
        if res == RES_PODS:
            q["kubelet"].add(key)
            ref = controller_ref(obj)
            if ref is None and old is not None:
                ref = controller_ref(old)
            if ref:
                target = self.by_uid.get(ref.get("uid"))
                if target:
                    q[{RES_RS: "replicaset", RES_STS: "statefulset", RES_DS: "daemonset", RES_JOB: "job",
                       RES_DEPLOY: "deployment"}[target[0]]].add(target[1])
            for pk in self.pdbs_by_ns.get(key[0], ()):
                pdb = self.cache[RES_PDB].get(pk)
                if pdb is None:
                    continue
                sel = (pdb.get("spec") or {}).get("selector")
                lbl = m.get("labels")
                if selector_matches(sel, lbl) or (old is not None and selector_matches(sel, meta(old).get(
                        "labels"))):
                    q["disruption"].add(pk)
            if etype == "DELETED" and (m.get("annotations") or {}).get(ANN_MIRROR):
                self._mirror_templates[key] = obj
                q["kubelet"].add(("mirror",) + key)
            if etype == "DELETED":
                self._not_ready_since.pop(key, None)
                self._deleting_due.pop(key, None)
                ns_obj = self.cache[RES_NS].get(("", key[0]))
                if ns_obj is not None and meta(ns_obj).get("deletionTimestamp"):
                    q["namespace"].add(key[0])
        elif res == RES_SECRETS:
            if obj.get("type") == SA_TOKEN:
                if etype == "DELETED":
                    sa = (m.get("annotations") or {}).get(ANN_SA_NAME, "")
                    q["serviceaccounts"].add(("sa", key[0], sa))
                else:
                    q["tokens"].add(key)
        elif res == RES_SA:
            q["serviceaccounts"].add(("sa",) + key)
            if etype != "MODIFIED" or old is None or meta(old).get("uid") != m.get("uid"):
                for sname in self.tokens_by_sa.get(key, ()):
                    q["tokens"].add((key[0], sname))
        elif res == RES_NS:
            q["serviceaccounts"].add(("ns", key[1]))
            q["namespace"].add(key[1])
            q["rootca"].add(key[1])
        elif res == RES_NODES:
            q["node"].add(key[1])
            for k in self.pods_by_node.get(key[1], ()):
                q["kubelet"].add(k)
            for k in self.cache[RES_DS]:
                q["daemonset"].add(k)
        elif res == RES_RS:
            q["replicaset"].add(key)
            ref = controller_ref(obj) or (controller_ref(old) if old else None)
            if ref:
                target = self.by_uid.get(ref.get("uid"))
                if target and target[0] == RES_DEPLOY:
                    q["deployment"].add(target[1])
        elif res == RES_DEPLOY:
            q["deployment"].add(key)
        elif res == RES_STS:
            q["statefulset"].add(key)
        elif res == RES_DS:
            q["daemonset"].add(key)
        elif res == RES_JOB:
            q["job"].add(key)
        elif res == RES_PDB:
            if etype != "DELETED":
                q["disruption"].add(key)
        elif res == RES_CSR:
            if etype != "DELETED":
                q["csr"].add(key[1])
        elif res == RES_CRB:
            if (obj.get("roleRef") or {}).get("name") == SELFNODECLIENT_ROLE:
                for k in list(self.cache[RES_CSR]):
                    q["csr"].add(k[1])
        elif res == RES_CM:
            if key == (EXT_AUTH_NS, EXT_AUTH_NAME):
                q["trust"].add("sync")
            elif key[1] == "kube-root-ca.crt":
                q["rootca"].add(key[0])

    # ---- node-down tracking
    def set_node_down(self, name, down=True):
        s = self._down_set()
        if down:
            s.add(name)
        else:
            s.discard(name)
        self._node_down_changed()

    def is_node_down(self, name):
        return name in self._down_set()

    def _poll_down_nodes(self):
        if not self._started:
            return
        snap = frozenset(self._down_set())
        if snap != self._down_snapshot:
            self._node_down_changed()
        self.timers.call_later(0.5, self._poll_down_nodes)

    def _node_down_changed(self):
        snap = frozenset(self._down_set())
        changed = snap ^ self._down_snapshot
        self._down_snapshot = snap
        if not self._started:
            return
        with self._lock:
            for n in changed:
                self.queues["node"].add(n)
                for k in self.pods_by_node.get(n, ()):
                    self.queues["kubelet"].add(k)
            for k in self.cache[RES_DS]:
                self.queues["daemonset"].add(k)

    def node_usable(self, node):
        if node is None:
            return False
        name = meta(node).get("name")
        if self.is_node_down(name) or meta(node).get("deletionTimestamp"):
            return False
        if (node.get("spec") or {}).get("unschedulable"):
            return False
        for c in (node.get("status") or {}).get("conditions") or []:
            if c.get("type") == "Ready" and c.get("status") != "True":
                return False
        return True

    # ---- helpers for writes
    def _mutate(self, res, ns, name, fn, subresource=None):
        kwargs = {"subresource": subresource} if subresource else {}
        try:
            obj = self.store.mutate(res, ns or None, name, fn, **kwargs)
        except Exception as e:  # noqa: BLE001
            if getattr(e, "code", None) == 404:
                return None
            raise
        return self._write(res, obj)

    def _create(self, res, obj):
        created = self.store.create(res, obj)
        return self._write(res, created)

    def _delete(self, res, ns, name, **kw):
        try:
            deleted_now, obj = self.store.delete(res, ns or None, name, **kw)
        except Exception as e:  # noqa: BLE001
            if getattr(e, "code", None) == 404:
                with self._lock:
                    if res in self.cache:
                        self._cache_remove(res, (ns or "", name))
                return None
            raise
        if res in self.cache:
            with self._lock:
                if deleted_now:
                    self._cache_remove(res, (ns or "", name))
                elif obj is not None:
                    self._cache_put(res, obj)
        return obj

    def ca_b64(self):
        pem = self.pki.ca_cert_pem if self.pki is not None else ""
        if self._ca_b64_src != pem:
            self._ca_b64 = b64(pem)
            self._ca_b64_src = pem
        return self._ca_b64

    # ================================================================ tokens controller
    def _on_pki_rebuild(self, _pki=None):
        with self._lock:
            keys = [k for k, s in self.cache[RES_SECRETS].items() if s.get("type") == SA_TOKEN]
            nss = [k[1] for k in self.cache[RES_NS]]
        for k in keys:
            self.queues["tokens"].add(k)
        for n in nss:
            self.queues["rootca"].add(n)
        self.queues["trust"].add("sync")

    def _token_rate_wait(self, key):
        """token_rate (tokens per second, 0/None = unlimited): a real controller-manager refills
        about 9 token Secrets per second (1.19); each Secret waiting for a token gets the next slot.
        Seconds to wait for key's slot, or None when it is due."""
        rate = float(self.opts.get("token_rate") or 0)
        slots = self.__dict__.setdefault("_token_slot", {})
        if rate <= 0:
            slots.pop(key, None)
            return None
        now = time.monotonic()
        if key not in slots:
            self._token_clock = max(now, getattr(self, "_token_clock", 0.0)) + 1.0 / rate
            slots[key] = self._token_clock
        if slots[key] > now:
            return slots[key] - now
        slots.pop(key, None)
        return None

    def sign_legacy_token(self, ns, sa_name, sa_uid, secret_name, key=None):
        from .pki import legacy_token_claims
        return self.pki.sign_jwt(legacy_token_claims(ns, sa_name, sa_uid, secret_name), key=key)

    def _sync_tokens(self, key):
        ns, name = key
        sec = self.get(RES_SECRETS, ns, name)
        if sec is None or sec.get("type") != SA_TOKEN or meta(sec).get("deletionTimestamp"):
            return None
        ann = meta(sec).get("annotations") or {}
        sa = self.get(RES_SA, ns, ann.get(ANN_SA_NAME, ""))
        sa_uid = ann.get(ANN_SA_UID, "")
        if sa is None or (sa_uid and meta(sa).get("uid") != sa_uid):
            # the real tokens controller deletes tokens of a missing / re-created ServiceAccount
            self._delete(RES_SECRETS, ns, name, preconditions={"uid": meta(sec).get("uid")})
            return None
        data = sec.get("data") or {}
        ca = self.ca_b64()
        needs_ca = bool(ca) and data.get("ca.crt") != ca
        needs_ns = not data.get("namespace")
        needs_token = not data.get("token")
        if not (needs_ca or needs_ns or needs_token):
            return None
        if needs_token and self.opts["token_delay"] > 0 and not getattr(self, "_token_due", {}).get(key):
            self.__dict__.setdefault("_token_due", {})[key] = True
            return self.opts["token_delay"]
        getattr(self, "_token_due", {}).pop(key, None)
        wait = self._token_rate_wait(key) if needs_token else None
        if wait:
            return wait
        sa_name, sa_uid_real = meta(sa)["name"], meta(sa).get("uid", "")
        token = self.sign_legacy_token(ns, sa_name, sa_uid_real, name) if needs_token else None

        def fn(obj):
            d = obj.setdefault("data", {}) if obj.get("data") is not None else obj.setdefault("data", {})
            changed = False
            if ca and d.get("ca.crt") != ca:
                d["ca.crt"] = ca
                changed = True
            if not d.get("namespace"):
                d["namespace"] = b64(ns)
                changed = True
            if not d.get("token") and token:
                d["token"] = b64(token)
                changed = True
            if not changed:
                return False
            a = obj["metadata"].setdefault("annotations", {})
            a[ANN_SA_NAME] = sa_name
            a[ANN_SA_UID] = sa_uid_real
            return True
        self._mutate(RES_SECRETS, ns, name, fn)
        return None

    # ---- serviceaccounts controller (+ legacy token Secret auto-creation)
    def _sync_serviceaccount(self, key):
        if key[0] == "ns":
            ns_obj = self.get(RES_NS, "", key[1])
            if ns_obj is None or meta(ns_obj).get("deletionTimestamp"):
                return None
            if self.get(RES_SA, key[1], "default") is None:
                try:
                    self._create(RES_SA, {"apiVersion": "v1", "kind": "ServiceAccount",
                                          "metadata": {"name": "default", "namespace": key[1]}})
                except Exception as e:  # noqa: BLE001
                    if getattr(e, "code", None) != 409:
                        raise
            return None
        _, ns, name = key
        sa = self.get(RES_SA, ns, name)
        with self._lock:
            token_names = list(self.tokens_by_sa.get((ns, name), ()))
        if sa is None:
            for sname in token_names:
                self.queues["tokens"].add((ns, sname))
            return None
        if meta(sa).get("deletionTimestamp"):
            return None
        # drop references to token Secrets that no longer exist
        refs = sa.get("secrets") or []
        gone = [r.get("name") for r in refs if r.get("name") and self.get(RES_SECRETS, ns, r["name"]) is None
                and r.get("name") in self._known_token_refs(ns, name, refs)]
        if gone:
            def drop(obj):
                before = obj.get("secrets") or []
                after = [r for r in before if r.get("name") not in gone]
                if len(after) == len(before):
                    return False
                if after:
                    obj["secrets"] = after
                else:
                    obj.pop("secrets", None)
                return True
            sa = self._mutate(RES_SA, ns, name, drop) or sa
        if self.profile != "legacy":
            return None
        if self._has_referenced_token(sa):
            return None
        ns_obj = self.get(RES_NS, "", ns)
        if ns_obj is not None and meta(ns_obj).get("deletionTimestamp"):
            return None
        self.ensure_legacy_token(sa)
        return None

    def _known_token_refs(self, ns, sa_name, refs):
        # a reference whose Secret is gone: we only know it was a token when it looks like one
        return {r.get("name") for r in refs if (r.get("name") or "").startswith(sa_name + "-token-")}

    def _has_referenced_token(self, sa):
        ns, name = okey(sa)
        for r in sa.get("secrets") or []:
            s = self.get(RES_SECRETS, ns, r.get("name"))
            if s is None or s.get("type") != SA_TOKEN or meta(s).get("deletionTimestamp"):
                continue
            ann = meta(s).get("annotations") or {}
            if ann.get(ANN_SA_NAME) == name and ann.get(ANN_SA_UID, "") in ("", meta(sa).get("uid")):
                return True
        return False

    def ensure_legacy_token(self, sa):
        """Create `<sa>-token-xxxxx` (token signed now) and reference it from the SA; returns the Secret name."""
        with self._token_lock:
            fresh = self.store.get(RES_SA, okey(sa)[0] or None, okey(sa)[1])
            if fresh is None or meta(fresh).get("uid") != meta(sa).get("uid"):
                return None
            self._write(RES_SA, fresh)
            have = self._existing_token_name(fresh)
            if have:
                return have
            return self._create_legacy_token(fresh)

    def _existing_token_name(self, sa):
        ns, name = okey(sa)
        for r in sa.get("secrets") or []:
            s = self.get(RES_SECRETS, ns, r.get("name"))
            if s is None and not self._started:
                s = self.store.get(RES_SECRETS, ns, r.get("name"))
            if s is not None and s.get("type") == SA_TOKEN and not meta(s).get("deletionTimestamp") and \
                    (meta(s).get("annotations") or {}).get(ANN_SA_NAME) == name and \
                    (meta(s).get("annotations") or {}).get(ANN_SA_UID, "") in ("", meta(sa).get("uid")):
                return r["name"]
        return None

    def _create_legacy_token(self, sa):
        ns, name = okey(sa)
        uid = meta(sa).get("uid", "")
        for _ in range(5):
            sname = "%s-token-%s" % (name, rand5())
            if self.get(RES_SECRETS, ns, sname) is None:
                break
        token = self.sign_legacy_token(ns, name, uid, sname)
        secret = {"apiVersion": "v1", "kind": "Secret",
                  "metadata": {"name": sname, "namespace": ns,
                               "annotations": {ANN_SA_NAME: name, ANN_SA_UID: uid}},
                  "data": {"ca.crt": self.ca_b64(), "namespace": b64(ns), "token": b64(token)},
                  "type": SA_TOKEN}
        self._create(RES_SECRETS, secret)

        def add_ref(obj):
            if meta(obj).get("uid") != uid:
                return False
            refs = obj.get("secrets") or []
            refs.append({"name": sname})
            obj["secrets"] = refs
            return True
        if self._mutate(RES_SA, ns, name, add_ref) is None:
            self._delete(RES_SECRETS, ns, sname)
            return None
        return sname

    # ================================================================ pod admission (called synchronously)
    def admit_pod(self, pod):
        """ServiceAccount + DefaultTolerationSeconds admission, in place; returns the pod.

        Raises ApiError 403 like the real plugin when the ServiceAccount does not exist (except "default", which is
        created on the fly so tests need not wait for the serviceaccounts controller)."""
        md = pod.setdefault("metadata", {})
        spec = pod.setdefault("spec", {})
        ann = md.get("annotations") or {}
        if ann.get(ANN_MIRROR):
            return pod
        ns = md.get("namespace") or ""
        sa_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = sa_name
        spec["serviceAccount"] = sa_name
        sa = self.get(RES_SA, ns, sa_name) if self._started else None
        if sa is None:
            try:
                sa = self.store.get(RES_SA, ns, sa_name)
            except Exception:  # noqa: BLE001
                sa = None
        if sa is None and sa_name == "default":
            try:
                sa = self._create(RES_SA, {"apiVersion": "v1", "kind": "ServiceAccount",
                                           "metadata": {"name": "default", "namespace": ns}})
            except Exception:  # noqa: BLE001
                sa = self.store.get(RES_SA, ns, sa_name)
        if sa is None:
            from .errors import forbidden
            raise forbidden(("", "pods"), md.get("name") or md.get("generateName") or "",
                            'error looking up service account %s/%s: serviceaccount "%s" not found'
                            % (ns, sa_name, sa_name))
        automount = spec.get("automountServiceAccountToken")
        if automount is None:
            automount = sa.get("automountServiceAccountToken")
        if automount is not False and not self._has_sa_mount(spec):
            if self.profile == "legacy":
                vol_name = self._legacy_token_for(sa)
                volume = {"name": vol_name, "secret": {"secretName": vol_name, "defaultMode": 420}}
            else:
                vol_name = "kube-api-access-" + rand5()
                volume = {"name": vol_name, "projected": {"sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {
                        "apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}], "defaultMode": 420}}
            if vol_name:
                spec.setdefault("volumes", []).append(volume)
                for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
                    c.setdefault("volumeMounts", []).append(
                        {"name": vol_name, "readOnly": True, "mountPath": SA_MOUNT})
        tol = spec.setdefault("tolerations", [])
        for k in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if not any(t.get("key") == k for t in tol):
                tol.append({"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        return pod

    @staticmethod
    def _has_sa_mount(spec):
        for c in spec.get("containers") or []:
            for vm in c.get("volumeMounts") or []:
                if vm.get("mountPath") == SA_MOUNT:
                    return True
        return False

    def _legacy_token_for(self, sa):
        ns, name = okey(sa)
        for r in sa.get("secrets") or []:
            s = self.get(RES_SECRETS, ns, r.get("name")) or self.store.get(RES_SECRETS, ns, r.get("name"))
            if s is not None and s.get("type") == SA_TOKEN and \
                    (meta(s).get("annotations") or {}).get(ANN_SA_NAME) == name:
                return r["name"]
        if self.pki is not None:
            return self.ensure_legacy_token(sa)
        return None

    # ================================================================ ReplicaSet controller
    def new_pod_from_template(self, owner, owner_api, owner_kind, template, name=None, generate_name=None,
                              extra_labels=None, node_name=None):
        tm = copy.deepcopy((template or {}).get("metadata") or {})
        spec = copy.deepcopy((template or {}).get("spec") or {})
        ns = meta(owner).get("namespace")
        md = {"namespace": ns, "labels": dict(tm.get("labels") or {})}
        if name:
            md["name"] = name
        else:
            md["generateName"] = generate_name
            md["name"] = generate_name + rand5()
        if extra_labels:
            md["labels"].update(extra_labels)
        if tm.get("annotations"):
            md["annotations"] = dict(tm["annotations"])
        md["ownerReferences"] = [owner_ref(owner, owner_api, owner_kind)]
        if node_name:
            spec["nodeName"] = node_name
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("securityContext", {})
        spec.setdefault("schedulerName", "default-scheduler")
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec,
               "status": {"phase": "Pending", "qosClass": "BestEffort"}}
        try:
            self.admit_pod(pod)
        except Exception as e:  # noqa: BLE001 - like the real controllers: creation fails, retry later
            raise RuntimeError("admission failed: %s" % e)
        return pod

    def _sync_replicaset(self, key):
        rs = self.get(RES_RS, *key)
        if rs is None or meta(rs).get("deletionTimestamp"):
            return None
        uid = meta(rs)["uid"]
        want = (rs.get("spec") or {}).get("replicas", 1)
        pods = self.owned_pods(uid)
        active = [p for p in pods if pod_is_active(p)]
        diff = want - len(active)
        if diff > 0:
            for _ in range(min(diff, 500)):
                pod = self.new_pod_from_template(rs, "apps/v1", "ReplicaSet", rs["spec"].get("template"),
                                                 generate_name=meta(rs)["name"] + "-")
                self._create(RES_PODS, pod)
        elif diff < 0:
            def rank(p):
                return (bool((p.get("spec") or {}).get("nodeName")), pod_phase(p) == "Running", pod_is_ready(p),
                        -(parse_rfc3339(meta(p).get("creationTimestamp")) or 0))
            for p in sorted(active, key=rank)[:-diff]:
                self._delete(RES_PODS, *okey(p))
            active = [p for p in self.owned_pods(uid) if pod_is_active(p)]
        active = [p for p in self.owned_pods(uid) if pod_is_active(p)]
        sel = (rs.get("spec") or {}).get("selector")
        ready = sum(1 for p in active if pod_is_ready(p))
        status = {"replicas": len(active),
                  "fullyLabeledReplicas": sum(1 for p in active if selector_matches(sel, meta(p).get("labels"))),
                  "readyReplicas": ready, "availableReplicas": ready,
                  "observedGeneration": meta(rs).get("generation", 1)}
        _omit_zero(status, ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"))
        old = dict(rs.get("status") or {})
        old.pop("conditions", None)
        if old != status:
            def fn(obj):
                conds = (obj.get("status") or {}).get("conditions")
                obj["status"] = dict(status)
                if conds:
                    obj["status"]["conditions"] = conds
                return True
            self._mutate(RES_RS, key[0], key[1], fn, subresource="status")
        return None

    # ================================================================ Deployment controller
    def _sync_deployment(self, key):
        d = self.get(RES_DEPLOY, *key)
        if d is None or meta(d).get("deletionTimestamp"):
            return None
        ns, name = key
        uid = meta(d)["uid"]
        spec = d.get("spec") or {}
        replicas = spec.get("replicas", 1)
        template = spec.get("template") or {}
        with self._lock:
            rss = [self.cache[RES_RS][k] for k in self.rs_by_owner.get(uid, ()) if k in self.cache[RES_RS]]
        rss = [r for r in rss if not meta(r).get("deletionTimestamp")]
        new = None
        for r in rss:
            if templates_equal((r.get("spec") or {}).get("template"), template):
                new = r
                break
        old = [r for r in rss if r is not new]

        def rev(r):
            try:
                return int((meta(r).get("annotations") or {}).get(ANN_REVISION, "0"))
            except ValueError:
                return 0
        max_old_rev = max([rev(r) for r in old] or [0])
        strategy = spec.get("strategy") or {}
        rolling = strategy.get("type", "RollingUpdate") != "Recreate"
        ru = strategy.get("rollingUpdate") or {}
        surge = int_or_percent(ru.get("maxSurge", "25%"), replicas, True) if rolling else 0
        unavail = int_or_percent(ru.get("maxUnavailable", "25%"), replicas, False) if rolling else 0
        if rolling and surge == 0 and unavail == 0:
            unavail = 1
        created_new = False
        if new is None:
            h = template_hash(template, (d.get("status") or {}).get("collisionCount", 0))
            rs_name = "%s-%s" % (name, h)
            tmpl = copy.deepcopy(template)
            tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
            sel = copy.deepcopy(spec.get("selector") or {})
            sel.setdefault("matchLabels", {})["pod-template-hash"] = h
            if not rolling:
                initial = 0 if any((r.get("spec") or {}).get("replicas", 0) for r in old) else replicas
            elif not old:
                initial = replicas
            else:
                total = sum((r.get("spec") or {}).get("replicas", 0) for r in old)
                initial = max(0, min(replicas, replicas + surge - total))
            rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                  "metadata": {"name": rs_name, "namespace": ns, "labels": dict(tmpl["metadata"]["labels"]),
                               "annotations": {"deployment.kubernetes.io/desired-replicas": str(replicas),
                                               "deployment.kubernetes.io/max-replicas": str(replicas + surge),
                                               ANN_REVISION: str(max_old_rev + 1)},
                               "ownerReferences": [owner_ref(d, "apps/v1", "Deployment")]},
                  "spec": {"replicas": initial, "selector": sel, "template": tmpl}}
            if spec.get("minReadySeconds"):
                rs["spec"]["minReadySeconds"] = spec["minReadySeconds"]
            try:
                new = self._create(RES_RS, rs)
                created_new = True
            except Exception as e:  # noqa: BLE001
                if getattr(e, "code", None) != 409:
                    raise
                existing = self.store.get(RES_RS, ns, rs_name)
                if existing is None or controller_ref(existing) is None or \
                        controller_ref(existing).get("uid") != uid:
                    # hash collision: bump collisionCount like the real controller
                    def bump(obj):
                        st = obj.setdefault("status", {})
                        st["collisionCount"] = st.get("collisionCount", 0) + 1
                        return True
                    self._mutate(RES_DEPLOY, ns, name, bump, subresource="status")
                    return 0.05
                new = self._write(RES_RS, existing)
        elif rev(new) <= max_old_rev:
            target = str(max_old_rev + 1)

            def set_rev(obj):
                obj["metadata"].setdefault("annotations", {})[ANN_REVISION] = target
                return True
            new = self._mutate(RES_RS, ns, meta(new)["name"], set_rev) or new
        new_rev = (meta(new).get("annotations") or {}).get(ANN_REVISION, "1")
        if (meta(d).get("annotations") or {}).get(ANN_REVISION) != new_rev:
            def set_drev(obj):
                obj["metadata"].setdefault("annotations", {})[ANN_REVISION] = new_rev
                return True
            d = self._mutate(RES_DEPLOY, ns, name, set_drev) or d

        def scale(r, n):
            if (r.get("spec") or {}).get("replicas", 0) == n:
                return r
            rn = meta(r)["name"]

            def fn(obj):
                obj["spec"]["replicas"] = n
                a = obj["metadata"].setdefault("annotations", {})
                a["deployment.kubernetes.io/desired-replicas"] = str(replicas)
                a["deployment.kubernetes.io/max-replicas"] = str(replicas + surge)
                return True
            return self._mutate(RES_RS, ns, rn, fn) or r

        def spec_reps(r):
            return (r.get("spec") or {}).get("replicas", 0)

        def avail(r):
            return (r.get("status") or {}).get("availableReplicas", 0)

        paused = spec.get("paused")
        if not paused:
            if not rolling:
                if any(spec_reps(r) for r in old):
                    old = [scale(r, 0) for r in old]
                elif not any((r.get("status") or {}).get("replicas", 0) for r in old):
                    new = scale(new, replicas)
            else:
                total = sum(spec_reps(r) for r in rss if r is not new) + spec_reps(new)
                if spec_reps(new) < replicas:
                    allowed = replicas + surge - total
                    if allowed > 0:
                        new = scale(new, min(replicas, spec_reps(new) + allowed))
                elif spec_reps(new) > replicas:
                    new = scale(new, replicas)
                min_avail = replicas - unavail
                all_count = sum(spec_reps(r) for r in old) + spec_reps(new)
                new_unavail = spec_reps(new) - avail(new)
                max_down = all_count - min_avail - new_unavail
                if max_down > 0:
                    olds = sorted(old, key=lambda r: (meta(r).get("creationTimestamp") or "", meta(r)["name"]))
                    for i, r in enumerate(olds):
                        if max_down <= 0:
                            break
                        unhealthy = spec_reps(r) - avail(r)
                        if spec_reps(r) == 0 or unhealthy <= 0:
                            continue
                        down = min(max_down, unhealthy)
                        olds[i] = scale(r, spec_reps(r) - down)
                        max_down -= down
                    available = sum(min(avail(r), spec_reps(r)) for r in olds) + avail(new)
                    budget = available - min_avail
                    for i, r in enumerate(olds):
                        if budget <= 0:
                            break
                        if spec_reps(r) == 0:
                            continue
                        down = min(budget, spec_reps(r))
                        olds[i] = scale(r, spec_reps(r) - down)
                        budget -= down
                    old = olds
            # history cleanup
            limit = spec.get("revisionHistoryLimit", 10)
            dead = [r for r in old if spec_reps(r) == 0 and not (r.get("status") or {}).get("replicas")]
            if len(dead) > limit:
                dead.sort(key=rev)
                for r in dead[:len(dead) - limit]:
                    self._delete(RES_RS, ns, meta(r)["name"])
        # status
        allrs = [new] + old
        st_replicas = sum((r.get("status") or {}).get("replicas", 0) for r in allrs)
        updated = (new.get("status") or {}).get("replicas", 0)
        ready = sum((r.get("status") or {}).get("readyReplicas", 0) for r in allrs)
        available = sum(avail(r) for r in allrs)
        total_spec = sum(spec_reps(r) for r in allrs)
        now = now_rfc3339()
        rs_name = meta(new)["name"]
        complete = updated == replicas and st_replicas == replicas and available >= replicas and \
            (new.get("status") or {}).get("observedGeneration", 0) >= meta(new).get("generation", 1)

        def fn(obj):
            st = obj.get("status") or {}
            conds = [dict(c) for c in st.get("conditions") or []]
            if available >= replicas - unavail:
                set_condition(conds, "Available", "True", "MinimumReplicasAvailable",
                              "Deployment has minimum availability.", now)
            else:
                set_condition(conds, "Available", "False", "MinimumReplicasUnavailable",
                              "Deployment does not have minimum availability.", now)
            if paused:
                set_condition(conds, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", now)
            elif complete:
                set_condition(conds, "Progressing", "True", "NewReplicaSetAvailable",
                              'ReplicaSet "%s" has successfully progressed.' % rs_name, now)
            elif created_new:
                set_condition(conds, "Progressing", "True", "NewReplicaSetCreated",
                              'Created new replica set "%s"' % rs_name, now)
            else:
                set_condition(conds, "Progressing", "True", "ReplicaSetUpdated",
                              'ReplicaSet "%s" is progressing.' % rs_name, now)
            new_st = {"observedGeneration": meta(obj).get("generation", 1), "replicas": st_replicas,
                      "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
                      "unavailableReplicas": max(0, total_spec - available), "conditions": conds}
            if st.get("collisionCount"):
                new_st["collisionCount"] = st["collisionCount"]
            _omit_zero(new_st, ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas",
                                "unavailableReplicas"))
            if new_st == st:
                return False
            obj["status"] = new_st
            return True
        self._mutate(RES_DEPLOY, ns, name, fn, subresource="status")
        return None

    # ================================================================ StatefulSet controller
    def _sync_statefulset(self, key):
        s = self.get(RES_STS, *key)
        if s is None or meta(s).get("deletionTimestamp"):
            return None
        ns, name = key
        spec = s.get("spec") or {}
        replicas = spec.get("replicas", 1)
        template = spec.get("template") or {}
        update_rev = "%s-%s" % (name, template_hash(template))
        parallel = spec.get("podManagementPolicy") == "Parallel"
        us = spec.get("updateStrategy") or {}
        on_delete = us.get("type") == "OnDelete"
        partition = int(((us.get("rollingUpdate") or {}).get("partition")) or 0)
        pods = {}
        for p in self.owned_pods(meta(s)["uid"]):
            pname = meta(p)["name"]
            try:
                ordinal = int(pname.rsplit("-", 1)[1])
            except (IndexError, ValueError):
                continue
            pods[ordinal] = p

        def prev(p):
            return (meta(p).get("labels") or {}).get("controller-revision-hash")

        def healthy(p):
            return p is not None and pod_is_active(p) and pod_is_ready(p)
        status_cur = (s.get("status") or {}).get("currentRevision") or update_rev
        # create missing ordinals
        for i in range(replicas):
            p = pods.get(i)
            if p is None:
                if not parallel and any(not healthy(pods.get(j)) for j in range(i)):
                    break
                rev_label = update_rev if i >= partition or status_cur == update_rev else status_cur
                tmpl = template
                pod = self.new_pod_from_template(
                    s, "apps/v1", "StatefulSet", tmpl, name="%s-%d" % (name, i),
                    extra_labels={"controller-revision-hash": rev_label,
                                  "statefulset.kubernetes.io/pod-name": "%s-%d" % (name, i)})
                pod["spec"]["hostname"] = "%s-%d" % (name, i)
                if spec.get("serviceName"):
                    pod["spec"]["subdomain"] = spec["serviceName"]
                try:
                    pods[i] = self._create(RES_PODS, pod)
                except Exception as e:  # noqa: BLE001
                    if getattr(e, "code", None) != 409:
                        raise
                if not parallel:
                    break
            elif not parallel and not healthy(p) and pod_is_active(p):
                break
        # scale down: highest ordinal first
        extra = sorted([i for i in pods if i >= replicas], reverse=True)
        for i in extra:
            p = pods[i]
            if pod_is_active(p):
                if not parallel and any(not healthy(pods.get(j)) for j in range(replicas) if j in pods):
                    break
                self._delete(RES_PODS, ns, meta(p)["name"])
                if not parallel:
                    break
        # rolling update: highest ordinal first, one at a time, only when all are healthy
        if not on_delete and all(healthy(pods.get(i)) for i in range(replicas)):
            for i in sorted(range(partition, replicas), reverse=True):
                p = pods.get(i)
                if p is not None and prev(p) != update_rev:
                    self._delete(RES_PODS, ns, meta(p)["name"])
                    break
        live = [p for i, p in pods.items() if i < replicas and p is not None]
        active = [p for p in live if not meta(p).get("deletionTimestamp")]
        ready = sum(1 for p in active if pod_is_ready(p))
        updated = sum(1 for p in active if prev(p) == update_rev)
        current_rev = status_cur
        if updated == replicas and len(active) == replicas:
            current_rev = update_rev
        current = sum(1 for p in active if prev(p) == current_rev)
        status = {"observedGeneration": meta(s).get("generation", 1), "replicas": len(active),
                  "readyReplicas": ready, "currentReplicas": current, "updatedReplicas": updated,
                  "currentRevision": current_rev, "updateRevision": update_rev, "collisionCount": 0,
                  "availableReplicas": ready}
        _omit_zero(status, ("readyReplicas", "currentReplicas", "updatedReplicas"))
        if (s.get("status") or {}) != status:
            def fn(obj):
                obj["status"] = dict(status)
                return True
            self._mutate(RES_STS, ns, name, fn, subresource="status")
        return None

    # ================================================================ DaemonSet controller
    def _sync_daemonset(self, key):
        ds = self.get(RES_DS, *key)
        if ds is None or meta(ds).get("deletionTimestamp"):
            return None
        ns, name = key
        spec = ds.get("spec") or {}
        template = spec.get("template") or {}
        h = template_hash(template)
        gen = meta(ds).get("generation", 1)
        node_sel = (template.get("spec") or {}).get("nodeSelector") or {}
        with self._lock:
            nodes = [n for n in self.cache[RES_NODES].values()]
        eligible = {meta(n)["name"] for n in nodes if self.node_usable(n)
                    and all((meta(n).get("labels") or {}).get(k) == v for k, v in node_sel.items())}
        by_node = {}
        for p in self.owned_pods(meta(ds)["uid"]):
            by_node.setdefault((p.get("spec") or {}).get("nodeName"), []).append(p)
        us = spec.get("updateStrategy") or {}
        rolling = us.get("type", "RollingUpdate") == "RollingUpdate"
        max_unavail = int_or_percent((us.get("rollingUpdate") or {}).get("maxUnavailable", 1), len(eligible), True)
        max_unavail = max(1, max_unavail)
        created = 0
        for node in sorted(eligible):
            if not by_node.get(node):
                pod = self.new_pod_from_template(
                    ds, "apps/v1", "DaemonSet", template, generate_name=name + "-",
                    extra_labels={"controller-revision-hash": h, "pod-template-generation": str(gen)},
                    node_name=node)
                by_node[node] = [self._create(RES_PODS, pod)]
                created += 1
                if created >= 500:
                    break
        # pods on nodes that are not eligible any more (node deleted / selector) -> delete; down nodes are kept
        for node, plist in list(by_node.items()):
            if node in eligible or (node is not None and self.is_node_down(node)):
                continue
            if node is not None and self.get(RES_NODES, "", node) is not None and not node_sel:
                continue
            for p in plist:
                if pod_is_active(p):
                    self._delete(RES_PODS, ns, meta(p)["name"])
        if rolling:
            unavailable = sum(1 for n in eligible if not any(pod_is_active(p) and pod_is_ready(p)
                                                             for p in by_node.get(n, [])))
            for node in sorted(eligible):
                for p in by_node.get(node, []):
                    if not pod_is_active(p) or (meta(p).get("labels") or {}).get("controller-revision-hash") == h:
                        continue
                    if not pod_is_ready(p):
                        self._delete(RES_PODS, ns, meta(p)["name"])
                    elif unavailable < max_unavail:
                        self._delete(RES_PODS, ns, meta(p)["name"])
                        unavailable += 1
        scheduled = [n for n in eligible if any(pod_is_active(p) for p in by_node.get(n, []))]
        ready = [n for n in eligible if any(pod_is_active(p) and pod_is_ready(p) for p in by_node.get(n, []))]
        updated = [n for n in eligible if any(pod_is_active(p) and (meta(p).get("labels") or {}).get(
            "controller-revision-hash") == h for p in by_node.get(n, []))]
        available = ready
        status = {"currentNumberScheduled": len(scheduled), "numberMisscheduled": 0,
                  "desiredNumberScheduled": len(eligible), "numberReady": len(ready), "observedGeneration": gen,
                  "updatedNumberScheduled": len(updated), "numberAvailable": len(available),
                  "numberUnavailable": len(eligible) - len(available)}
        _omit_zero(status, ("updatedNumberScheduled", "numberAvailable", "numberUnavailable"))
        if (ds.get("status") or {}) != status:
            def fn(obj):
                obj["status"] = dict(status)
                return True
            self._mutate(RES_DS, ns, name, fn, subresource="status")
        return None

    # ================================================================ Job controller
    def _sync_job(self, key):
        job = self.get(RES_JOB, *key)
        if job is None or meta(job).get("deletionTimestamp"):
            return None
        ns, name = key
        spec = job.get("spec") or {}
        st = job.get("status") or {}
        completions = spec.get("completions", 1)
        parallelism = spec.get("parallelism", 1)
        uid = meta(job)["uid"]
        pods = self.owned_pods(uid)
        succeeded = sum(1 for p in pods if pod_phase(p) == "Succeeded")
        failed = sum(1 for p in pods if pod_phase(p) == "Failed")
        active = [p for p in pods if pod_is_active(p)]
        complete = any(c.get("type") == "Complete" and c.get("status") == "True" for c in st.get("conditions") or [])
        if not complete and not spec.get("suspend"):
            want = min(parallelism, completions - succeeded) - len(active)
            for _ in range(max(0, want)):
                tmpl = spec.get("template") or {}
                pod = self.new_pod_from_template(job, "batch/v1", "Job", tmpl, generate_name=name + "-",
                                                 extra_labels={"controller-uid": uid, "job-name": name})
                pod["spec"]["restartPolicy"] = (tmpl.get("spec") or {}).get("restartPolicy", "Never")
                active.append(self._create(RES_PODS, pod))
        now = now_rfc3339()
        new = {"startTime": st.get("startTime") or now}
        if active:
            new["active"] = len(active)
        if succeeded:
            new["succeeded"] = succeeded
        if failed:
            new["failed"] = failed
        conds = [dict(c) for c in st.get("conditions") or []]
        if succeeded >= completions and not active:
            if not complete:
                conds.append({"type": "Complete", "status": "True", "lastProbeTime": now,
                              "lastTransitionTime": now})
            new["completionTime"] = st.get("completionTime") or now
        if conds:
            new["conditions"] = conds
        if new != st:
            def fn(obj):
                obj["status"] = new
                return True
            self._mutate(RES_JOB, ns, name, fn, subresource="status")
        return None

    # ================================================================ kubelet + scheduler
    def _pick_node(self):
        with self._lock:
            names = sorted(meta(n)["name"] for n in self.cache[RES_NODES].values() if self.node_usable(n))
        if not names:
            return None
        self._sched_rr = (self._sched_rr + 1) % len(names)
        return names[self._sched_rr]

    def _next_ip(self):
        with self._lock:
            self._ip_counter += 1
            n = self._ip_counter + (244 << 16)
        return "10.%d.%d.%d" % ((n >> 16) & 255, (n >> 8) & 255, n & 255)

    def _node_ip(self, node_name):
        node = self.get(RES_NODES, "", node_name)
        for a in ((node or {}).get("status") or {}).get("addresses") or []:
            if a.get("type") == "InternalIP":
                return a.get("address")
        return None

    def _sync_pod(self, key):
        if key and key[0] == "mirror":
            return self._recreate_mirror(key[1:])
        pod = self.get(RES_PODS, *key)
        if pod is None:
            return None
        ns, name = key
        m = meta(pod)
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        now_m = time.monotonic()
        if m.get("deletionTimestamp"):
            self._not_ready_since.pop(key, None)
            if not node or self.is_node_down(node) or m.get("finalizers"):
                return None
            if self.get(RES_NODES, "", node) is None and self.cache[RES_NODES]:
                return None  # no kubelet runs on a node that does not exist
            due = deletion_due(m, now_m, self.grace_cap, self._deleting_due.get(key), m.get("deletionTimestamp"))
            self._deleting_due[key] = due
            if now_m < due[0]:
                return due[0] - now_m
            self._deleting_due.pop(key, None)
            try:
                self.store.finalize_delete(RES_PODS, ns, name)
            except Exception as e:  # noqa: BLE001
                if getattr(e, "code", None) != 404:
                    raise
            with self._lock:
                cur = self.cache[RES_PODS].get(key)
                if cur is not None and meta(cur).get("uid") == m.get("uid"):
                    self._cache_remove(RES_PODS, key)
            return None
        phase = pod_phase(pod)
        if not node:
            if spec.get("schedulerName") not in (None, "", "default-scheduler"):
                return None  # like kube-scheduler: other schedulers' pods stay unscheduled
            target = self._pick_node()
            if target is None:
                return None
            now = now_rfc3339()

            def bind(obj):
                if obj["spec"].get("nodeName"):
                    return False
                obj["spec"]["nodeName"] = target
                return True
            self._mutate(RES_PODS, ns, name, bind)

            def sched(obj):
                st = obj.setdefault("status", {})
                conds = st.setdefault("conditions", [])
                set_condition(conds, "PodScheduled", "True", None, None, now, with_probe=True, update_time=False)
                return True
            self._mutate(RES_PODS, ns, name, sched, subresource="status")
            return None
        if self.get(RES_NODES, "", node) is None and self.cache[RES_NODES]:
            return None
        if self.is_node_down(node):
            self._not_ready_since.pop(key, None)
            if pod_is_ready(pod):
                now = now_rfc3339()

                def unready(obj):
                    conds = (obj.get("status") or {}).get("conditions") or []
                    for c in conds:
                        if c.get("type") in ("Ready", "ContainersReady"):
                            c["status"] = "False"
                            c["lastTransitionTime"] = now
                    for cs in (obj.get("status") or {}).get("containerStatuses") or []:
                        cs["ready"] = False
                    return True
                self._mutate(RES_PODS, ns, name, unready, subresource="status")
            return None
        if phase in ("Succeeded", "Failed"):
            return None
        if not pod_is_ready(pod):
            since = self._not_ready_since.setdefault(key, now_m)
            wait = since + self.kubelet_delay - now_m
            if wait > 0:
                return wait
            self._not_ready_since.pop(key, None)
            self._make_running(pod, node)
            return self._completion_delay(pod)
        done = self._completion_delay(pod)
        if done is not None:
            return done
        return None

    def _completion_delay(self, pod):
        after = (meta(pod).get("annotations") or {}).get(ANN_COMPLETE_AFTER)
        if after is None or pod_phase(pod) != "Running":
            return None
        start = parse_rfc3339((pod.get("status") or {}).get("startTime")) or time.time()
        remaining = start + float(after) - time.time()
        if remaining > 0:
            return remaining
        ns, name = okey(pod)
        now = now_rfc3339()

        def fn(obj):
            st = obj.setdefault("status", {})
            st["phase"] = "Succeeded"
            for c in st.get("conditions") or []:
                if c.get("type") in ("Ready", "ContainersReady"):
                    c["status"] = "False"
                    c["reason"] = "PodCompleted"
                    c["lastTransitionTime"] = now
            for cs in st.get("containerStatuses") or []:
                cs["ready"] = False
                cs["started"] = False
                started = ((cs.get("state") or {}).get("running") or {}).get("startedAt", now)
                cs["state"] = {"terminated": {"exitCode": 0, "reason": "Completed", "startedAt": started,
                                              "finishedAt": now, "containerID": cs.get("containerID", "")}}
            return True
        self._mutate(RES_PODS, ns, name, fn, subresource="status")
        return None

    def _make_running(self, pod, node):
        ns, name = okey(pod)
        now = now_rfc3339()
        host_ip = self._node_ip(node) or "192.0.2.1"
        pod_ip = self._next_ip()

        def fn(obj):
            if meta(obj).get("deletionTimestamp") or (obj.get("spec") or {}).get("nodeName") != node:
                return False
            obj["status"] = running_pod_status(obj, host_ip, pod_ip, now)
            return True
        self._mutate(RES_PODS, ns, name, fn, subresource="status")

    def _recreate_mirror(self, key):
        tmpl = self._mirror_templates.pop(key, None)
        if tmpl is None or self.get(RES_PODS, *key) is not None:
            return None
        node = (tmpl.get("spec") or {}).get("nodeName")
        if not node or self.is_node_down(node) or self.get(RES_NODES, "", node) is None:
            return None
        if self.kubelet_delay > 0 and not tmpl.get("_apisim_waited"):
            tmpl["_apisim_waited"] = True
            self._mirror_templates[key] = tmpl
            return self.kubelet_delay
        m = meta(tmpl)
        md = {"name": m["name"], "namespace": m.get("namespace")}
        for k in ("labels", "annotations", "ownerReferences"):
            if m.get(k):
                md[k] = copy.deepcopy(m[k])
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": copy.deepcopy(tmpl.get("spec") or {}),
               "status": {"phase": "Pending", "qosClass": (tmpl.get("status") or {}).get("qosClass", "BestEffort")}}
        try:
            self._create(RES_PODS, pod)
        except Exception as e:  # noqa: BLE001
            if getattr(e, "code", None) != 409:
                raise
        return None

    def _sync_node(self, name):
        node = self.get(RES_NODES, "", name)
        if node is None:
            return None
        down = self.is_node_down(name)
        now = now_rfc3339()
        conds = (node.get("status") or {}).get("conditions") or []
        ready = [c for c in conds if c.get("type") == "Ready"]
        want = "Unknown" if down else "True"
        if ready and ready[0].get("status") == want:
            return None
        if ready and not down and ready[0].get("status") not in ("Unknown",) and ready[0].get("status") != "True":
            return None  # explicitly NotReady (set by a test): leave it

        def fn(obj):
            st = obj.setdefault("status", {})
            cs = st.setdefault("conditions", [])
            if down:
                set_condition(cs, "Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.",
                              now, update_time=False)
            else:
                set_condition(cs, "Ready", "True", "KubeletReady", "kubelet is posting ready status", now,
                              update_time=False)
            for c in cs:
                c.setdefault("lastHeartbeatTime", now)
                if c.get("type") == "Ready":
                    c["lastHeartbeatTime"] = now
            return True
        self._mutate(RES_NODES, "", name, fn, subresource="status")

        def taint(obj):
            sp = obj.setdefault("spec", {})
            taints = [t for t in sp.get("taints") or [] if t.get("key") not in (
                "node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")]
            if down:
                taints.append({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule", "timeAdded": now})
            if taints == (sp.get("taints") or []):
                return False
            if taints:
                sp["taints"] = taints
            else:
                sp.pop("taints", None)
            return True
        self._mutate(RES_NODES, "", name, taint)
        return None

    # ================================================================ disruption controller (PDB status)
    def pdb_pods(self, pdb):
        ns = meta(pdb).get("namespace")
        sel = (pdb.get("spec") or {}).get("selector")
        if selector_empty(sel):
            return []
        with self._lock:
            pods = [self.cache[RES_PODS][k] for k in self.pods_by_ns.get(ns, ()) if k in self.cache[RES_PODS]]
        return [p for p in pods if selector_matches(sel, meta(p).get("labels"))]

    def compute_pdb_status(self, pdb, pods=None):
        if pods is None:
            pods = self.pdb_pods(pdb)
        spec = pdb.get("spec") or {}
        st = pdb.get("status") or {}
        disrupted = dict(st.get("disruptedPods") or {})
        now = time.time()
        pods_by_name = {meta(p)["name"]: p for p in pods}
        for pname, ts in list(disrupted.items()):
            p = pods_by_name.get(pname)
            t = parse_rfc3339(ts) or 0
            if p is None or meta(p).get("deletionTimestamp") or now - t > 120:
                del disrupted[pname]
        expected = len(pods)
        healthy = sum(1 for p in pods if not meta(p).get("deletionTimestamp") and pod_is_ready(p)
                      and meta(p)["name"] not in disrupted)
        if spec.get("maxUnavailable") is not None:
            desired = max(0, expected - int_or_percent(spec["maxUnavailable"], expected, True))
        elif spec.get("minAvailable") is not None:
            desired = int_or_percent(spec["minAvailable"], expected, True)
        else:
            desired = expected
        allowed = max(0, healthy - desired) if expected > 0 else 0
        status = {"observedGeneration": meta(pdb).get("generation", 1), "disruptionsAllowed": allowed,
                  "currentHealthy": healthy, "desiredHealthy": desired, "expectedPods": expected}
        if disrupted:
            status["disruptedPods"] = disrupted
        if self.profile == "modern":
            conds = [dict(c) for c in st.get("conditions") or []]
            nowr = now_rfc3339()
            if allowed > 0:
                set_condition(conds, "DisruptionAllowed", "True", "SufficientPods", "", nowr, update_time=False)
            else:
                set_condition(conds, "DisruptionAllowed", "False", "InsufficientPods", "", nowr, update_time=False)
            for c in conds:
                c["observedGeneration"] = status["observedGeneration"]
            status["conditions"] = conds
        return status

    def _sync_pdb(self, key):
        pdb = self.get(RES_PDB, *key)
        if pdb is None or meta(pdb).get("deletionTimestamp"):
            return None
        status = self.compute_pdb_status(pdb)
        if (pdb.get("status") or {}) == status:
            return None

        def fn(obj):
            if meta(obj).get("generation") != meta(pdb).get("generation"):
                return False
            obj["status"] = status
            return True
        self._mutate(RES_PDB, key[0], key[1], fn, subresource="status")
        return None

    def evict(self, ns, name, body, api_version=None):
        from . import eviction
        return eviction.evict(self, ns, name, body, api_version)

    # ================================================================ CSR signer + approver
    def _sync_csr(self, name):
        csr = self.get(RES_CSR, "", name)
        if csr is None:
            return None
        spec = csr.get("spec") or {}
        st = csr.get("status") or {}
        if st.get("certificate"):
            return None
        conds = st.get("conditions") or []
        types = {c.get("type") for c in conds if c.get("status", "True") == "True"}
        signer = spec.get("signerName")
        if "Denied" in types or "Failed" in types:
            return None
        if "Approved" not in types:
            if self.opts["csr_auto_approve"] and signer == "kubernetes.io/kube-apiserver-client-kubelet":
                self._maybe_auto_approve(csr)
            return None
        if signer not in ("kubernetes.io/kubelet-serving", "kubernetes.io/kube-apiserver-client-kubelet",
                          "kubernetes.io/kube-apiserver-client", "kubernetes.io/legacy-unknown"):
            return None
        due = getattr(self, "_csr_due", None)
        if due is None:
            due = self._csr_due = {}
        uid = meta(csr).get("uid")
        if self.opts["csr_sign_delay"] > 0 and due.get(name) != uid:
            due[name] = uid
            return self.opts["csr_sign_delay"]
        due.pop(name, None)
        try:
            pem = base64.b64decode(spec.get("request") or "")
            info = csrgen.parse_csr(pem)
        except ValueError:
            return None  # the real signer logs "unable to parse csr" and retries forever
        err = validate_for_signer(signer, info, spec.get("usages") or [])
        now = now_rfc3339()
        if err:
            def fail(obj):
                cs = obj.setdefault("status", {}).setdefault("conditions", [])
                cs.append({"type": "Failed", "status": "True", "reason": "SignerValidationFailure",
                           "message": err, "lastUpdateTime": now, "lastTransitionTime": now})
                return True
            self._mutate(RES_CSR, "", name, fail, subresource="status")
            return None
        cert = self.pki.sign_csr(pem, spec.get("usages") or [], 365)

        def fn(obj):
            if (obj.get("status") or {}).get("certificate"):
                return False
            obj.setdefault("status", {})["certificate"] = b64(cert)
            return True
        self._mutate(RES_CSR, "", name, fn, subresource="status")
        return None

    def _maybe_auto_approve(self, csr):
        spec = csr.get("spec") or {}
        user = spec.get("username") or ""
        if not user.startswith("system:node:"):
            return
        try:
            info = csrgen.parse_request_b64(spec.get("request"))
        except ValueError:
            return
        if info["cn"] != user or info["orgs"] != ["system:nodes"] or info["dns"] or info["ips"] or \
                info["emails"] or info["uris"]:
            return
        if set(spec.get("usages") or []) not in ({"digital signature", "key encipherment", "client auth"},
                                                 {"digital signature", "client auth"}):
            return
        groups = set(spec.get("groups") or [])
        with self._lock:
            crbs = list(self.cache[RES_CRB].values())
        allowed = False
        for b in crbs:
            if (b.get("roleRef") or {}).get("name") != SELFNODECLIENT_ROLE:
                continue
            for s in b.get("subjects") or []:
                if (s.get("kind") == "Group" and s.get("name") in groups) or \
                        (s.get("kind") == "User" and s.get("name") == user):
                    allowed = True
        if not allowed:
            return
        now = now_rfc3339()

        def fn(obj):
            cs = obj.setdefault("status", {}).setdefault("conditions", [])
            if any(c.get("type") in ("Approved", "Denied") for c in cs):
                return False
            cs.append({"type": "Approved", "status": "True", "reason": "AutoApproved",
                       "message": "Auto approving self kubelet client certificate after SubjectAccessReview.",
                       "lastUpdateTime": now, "lastTransitionTime": now})
            return True
        name = meta(csr)["name"]
        try:
            self._mutate(RES_CSR, "", name, fn, subresource="approval")
        except (TypeError, ValueError, KeyError):
            self._mutate(RES_CSR, "", name, fn, subresource="status")

    # ================================================================ apiserver trust controller
    def set_stale_apiserver(self, on=True, interval=None):
        """Simulate a kube-apiserver still running with the OLD CA: it merges the old CA back into
        extension-apiserver-authentication every `interval` seconds (and on every ConfigMap change)."""
        if interval is not None:
            self.opts["stale_interval"] = float(interval)
        was = self.stale_apiserver
        self.stale_apiserver = bool(on)
        if self._started:
            self.queues["trust"].add("sync")
            if on and not was:
                self.timers.call_later(self.opts["stale_interval"], self._stale_tick)

    def _stale_tick(self):
        if not self._started or not self.stale_apiserver:
            return
        self.queues["trust"].add("sync")
        self.timers.call_later(self.opts["stale_interval"], self._stale_tick)

    def _trust_tick(self):
        if not self._started:
            return
        self.queues["trust"].add("sync")
        self.timers.call_later(self.opts["trust_resync"], self._trust_tick)

    def own_trust_certs(self):
        """(client CAs, requestheader CAs) this (simulated) apiserver would add."""
        client = [self.pki.ca_cert_pem]
        front = [front_proxy_ca(self.pki)]
        if self.stale_apiserver:
            olds = list(getattr(self.pki, "old_ca_cert_pems", []) or [])
            oldf = list(getattr(self.pki, "old_front_proxy_ca_cert_pems", []) or [])
            if olds:
                client.append(olds[-1])
            if oldf:
                front.append(oldf[-1])
        return client, front

    def _cert_expired(self, pem):
        exp = self._cert_expiry.get(pem)
        if exp is None:
            try:
                out = subprocess.run(["openssl", "x509", "-noout", "-enddate"], input=pem.encode(),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False).stdout.decode()
                import calendar
                exp = calendar.timegm(time.strptime(" ".join(out.strip().split("=", 1)[1].split()[:4]),
                                                    "%b %d %H:%M:%S %Y"))
            except Exception:  # noqa: BLE001
                exp = float("inf")
            self._cert_expiry[pem] = exp
        return exp < time.time() - 300

    def _merge_bundle(self, existing, own):
        certs = split_pem(existing or "")
        seen = set()
        out = []
        for c in certs + own:
            c = c if c.endswith("\n") else c + "\n"
            if c in seen or self._cert_expired(c):
                continue
            seen.add(c)
            out.append(c)
        return "".join(out)

    def _sync_trust(self, _key):
        if self.pki is None:
            return None
        client, front = self.own_trust_certs()
        cm = self.store.get(RES_CM, EXT_AUTH_NS, EXT_AUTH_NAME)

        def merged(data):
            d = dict(data or {})
            d["client-ca-file"] = self._merge_bundle(d.get("client-ca-file"), client)
            d["requestheader-client-ca-file"] = self._merge_bundle(d.get("requestheader-client-ca-file"), front)
            for k, v in (("requestheader-allowed-names", ["front-proxy-client"]),
                         ("requestheader-extra-headers-prefix", ["X-Remote-Extra-"]),
                         ("requestheader-group-headers", ["X-Remote-Group"]),
                         ("requestheader-username-headers", ["X-Remote-User"])):
                try:
                    cur = json.loads(d.get(k) or "[]")
                except ValueError:
                    cur = []
                d[k] = json.dumps(cur + [x for x in v if x not in cur], separators=(",", ":"))
            return dict(sorted(d.items()))
        if cm is None:
            if self.get(RES_NS, "", EXT_AUTH_NS) is None and self.store.get(RES_NS, None, EXT_AUTH_NS) is None:
                return 1.0
            try:
                self.store.create(RES_CM, {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"name": EXT_AUTH_NAME, "namespace": EXT_AUTH_NS},
                                           "data": merged({})})
            except Exception as e:  # noqa: BLE001
                if getattr(e, "code", None) != 409:
                    raise
            return None

        def fn(obj):
            new = merged(obj.get("data"))
            if new == (obj.get("data") or {}):
                return False
            obj["data"] = new
            return True
        self.store.mutate(RES_CM, EXT_AUTH_NS, EXT_AUTH_NAME, fn)
        return None

    # ================================================================ root CA publisher (modern)
    def _sync_rootca(self, ns):
        if self.profile != "modern" or self.pki is None:
            return None
        ns_obj = self.get(RES_NS, "", ns)
        if ns_obj is None or meta(ns_obj).get("deletionTimestamp"):
            return None
        want = self.pki.ca_cert_pem
        cm = self.store.get(RES_CM, ns, "kube-root-ca.crt")
        if cm is None:
            try:
                self.store.create(RES_CM, {"apiVersion": "v1", "kind": "ConfigMap",
                                           "metadata": {"name": "kube-root-ca.crt", "namespace": ns,
                                                        "annotations": {"kubernetes.io/description": (
                                                            "Contains a CA bundle that can be used to verify the "
                                                            "kube-apiserver when using internal endpoints such as "
                                                            "the internal service IP or kubernetes.default.svc. No "
                                                            "other usage is guaranteed across distributions of "
                                                            "Kubernetes clusters.")}},
                                           "data": {"ca.crt": want}})
            except Exception as e:  # noqa: BLE001
                if getattr(e, "code", None) != 409:
                    raise
            return None
        if (cm.get("data") or {}).get("ca.crt") != want:
            def fn(obj):
                obj["data"] = {"ca.crt": want}
                return True
            self.store.mutate(RES_CM, ns, "kube-root-ca.crt", fn)
        return None

    # ================================================================ namespace controller
    def _sync_namespace(self, name):
        if hasattr(self.store, "_namespace_cleanup"):
            return None  # A's store empties and finalizes terminating namespaces itself
        ns_obj = self.get(RES_NS, "", name)
        if ns_obj is None or not meta(ns_obj).get("deletionTimestamp"):
            return None
        remaining = 0
        for res in sorted(self.seen_resources):
            try:
                items = self.store.list(res, name)
            except Exception:  # noqa: BLE001
                continue
            for obj in items:
                remaining += 1
                if meta(obj).get("deletionTimestamp"):
                    continue
                try:
                    self._delete(res, name, meta(obj)["name"])
                except Exception as e:  # noqa: BLE001
                    if getattr(e, "code", None) not in (404, 409):
                        raise
        if remaining:
            return 0.2

        def fn(obj):
            fins = (obj.get("spec") or {}).get("finalizers") or []
            if "kubernetes" not in fins:
                return False
            obj["spec"]["finalizers"] = [f for f in fins if f != "kubernetes"]
            return True
        try:
            self.store.mutate(RES_NS, None, name, fn, subresource="finalize")
        except (TypeError, ValueError, KeyError):
            self.store.mutate(RES_NS, None, name, fn)
        except Exception as e:  # noqa: BLE001
            if getattr(e, "code", None) == 404:
                return None
            if getattr(e, "code", None) is None:
                self.store.mutate(RES_NS, None, name, fn)
            else:
                raise
        cur = self.store.get(RES_NS, None, name)
        if cur is not None and not (cur.get("spec") or {}).get("finalizers") and not meta(cur).get("finalizers"):
            try:
                self.store.finalize_delete(RES_NS, None, name)
            except Exception as e:  # noqa: BLE001
                if getattr(e, "code", None) != 404:
                    raise
        return None


# --------------------------------------------------------------------------- module helpers

def deletion_due(m, now, grace_cap, prev, stamp):
    """(when, stamp): when a kubelet finalizes a pod being deleted (metadata m): min(deletionGracePeriodSeconds,
    default 30, grace_cap) after `now`; `prev` (an earlier result) is kept when computed for the same stamp."""
    if prev is not None and prev[1] == stamp:
        return prev
    grace = m.get("deletionGracePeriodSeconds")
    grace = 30 if grace is None else grace
    return now + min(float(grace), grace_cap), stamp


def running_pod_status(pod, host_ip, pod_ip, now):
    """status of a Running+Ready pod as a kubelet reports it (keeps PodScheduled, podIP and startTime)."""
    m = meta(pod)
    st = dict(pod.get("status") or {})
    conds = st.get("conditions") or []
    sched = [c for c in conds if c.get("type") == "PodScheduled"]
    new_conds = []
    for t in ("Initialized", "Ready", "ContainersReady"):
        old = [c for c in conds if c.get("type") == t]
        c = {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": now}
        if old and old[0].get("status") == "True":
            c["lastTransitionTime"] = old[0].get("lastTransitionTime", now)
        new_conds.append(c)
    new_conds.append(sched[0] if sched else {"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                                             "lastTransitionTime": now})
    st["phase"] = "Running"
    st["conditions"] = new_conds
    st["hostIP"] = host_ip
    if not st.get("podIP"):
        st["podIP"] = pod_ip
        st["podIPs"] = [{"ip": pod_ip}]
    st["startTime"] = st.get("startTime") or now
    cstats = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        cid = hashlib.sha256(("%s/%s/%s/%s" % (m.get("namespace"), m.get("name"), m.get("uid"), c.get("name"))
                              ).encode()).hexdigest()
        image = c.get("image", "")
        cstats.append({"name": c.get("name"), "state": {"running": {"startedAt": st["startTime"]}}, "lastState": {},
                       "ready": True, "restartCount": 0, "image": image,
                       "imageID": image + "@sha256:" + hashlib.sha256(image.encode()).hexdigest(),
                       "containerID": "containerd://" + cid, "started": True})
    st["containerStatuses"] = cstats
    st.setdefault("qosClass", "BestEffort")
    return st


def admit_pod(sim, pod):
    """Module-level hook: ServiceAccount admission through sim.controllers."""
    ctl = getattr(sim, "controllers", None)
    if ctl is None:
        return pod
    return ctl.admit_pod(pod)


def split_pem(bundle):
    out = []
    cur = []
    for line in (bundle or "").splitlines():
        if line.startswith("-----BEGIN"):
            cur = [line]
        elif line.startswith("-----END"):
            cur.append(line)
            out.append("\n".join(cur) + "\n")
            cur = []
        elif cur:
            cur.append(line)
    return out


_FRONT_LOCK = threading.Lock()


def front_proxy_ca(pki):
    """The front-proxy CA of the current PKI generation (pki.front_proxy_ca_cert_pem when A's PKI has one,
    else generated here once per pki.generation; previous ones kept in pki.old_front_proxy_ca_cert_pems)."""
    with _FRONT_LOCK:
        gen = getattr(pki, "generation", 0)
        have = getattr(pki, "front_proxy_ca_cert_pem", None)
        if have and getattr(pki, "_apisim_front_gen", gen) == gen:
            return have
        if have:
            olds = list(getattr(pki, "old_front_proxy_ca_cert_pems", []) or [])
            olds.append(have)
            pki.old_front_proxy_ca_cert_pems = olds
        key = subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
                             stdout=subprocess.PIPE, check=True).stdout
        import os
        import tempfile
        fd, path = tempfile.mkstemp(prefix="apisim-fp-", suffix=".key")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(key)
            from .pki import INITIAL_CA_AGE, self_signed_ca
            # the first generation's front-proxy CA is as old as the first cluster CA (pki.py)
            nb = int(time.time()) - INITIAL_CA_AGE if gen <= 1 else None
            cert = self_signed_ca(path, "front-proxy-ca", 3650, nb).decode()
        finally:
            os.unlink(path)
        pki.front_proxy_ca_cert_pem = cert
        pki._apisim_front_gen = gen
        return cert


KUBELET_SERVING_USAGES = ({"digital signature", "key encipherment", "server auth"},
                          {"digital signature", "server auth"})
KUBELET_CLIENT_USAGES = ({"digital signature", "key encipherment", "client auth"},
                         {"digital signature", "client auth"})


def validate_for_signer(signer, info, usages):
    """The kcm signer's validation (1.19 pkg/apis/certificates/v1 helpers); returns an error string or None."""
    us = set(usages)
    if signer == "kubernetes.io/kubelet-serving":
        if info["orgs"] != ["system:nodes"]:
            return "subject organization is not system:nodes"
        if not info["dns"] and not info["ips"]:
            return "DNS or IP subjectAltName is required"
        if info["emails"]:
            return "Email subjectAltNames are not allowed"
        if info["uris"]:
            return "URI subjectAltNames are not allowed"
        if us not in KUBELET_SERVING_USAGES:
            return "usages did not match [digital signature key encipherment server auth]"
        if not info["cn"].startswith("system:node:"):
            return "subject common name does not begin with system:node:"
    elif signer == "kubernetes.io/kube-apiserver-client-kubelet":
        if info["orgs"] != ["system:nodes"]:
            return "subject organization is not system:nodes"
        if info["dns"] or info["ips"] or info["emails"] or info["uris"]:
            return "DNS, IP, Email or URI subjectAltNames are not allowed"
        if us not in KUBELET_CLIENT_USAGES:
            return "usages did not match [client auth digital signature key encipherment]"
        if not info["cn"].startswith("system:node:"):
            return "subject common name does not begin with system:node:"
    elif signer == "kubernetes.io/kube-apiserver-client":
        if "client auth" not in us or us - {"digital signature", "key encipherment", "client auth"}:
            return "invalid usage for client certificate: %s" % ",".join(sorted(us))
    return None


def local_sim(workdir=None, start=True, **options):
    """Tests: an in-process simulator (A's server.Sim without the HTTPS server) with started controllers.

    options go to Controllers (e.g. profile="legacy", kubelet_delay=0.05); sa_key_type defaults to "ec"."""
    import tempfile
    from .server import Sim
    sim = Sim(workdir or tempfile.mkdtemp(prefix="apisim-local-"), sa_key_type=options.pop("sa_key_type", "ec"),
              profile=options.get("profile", "modern"), kubelet_delay=options.get("kubelet_delay", 0.05))
    options.setdefault("kubelet_delay", 0.05)
    options.setdefault("default_node", "")
    options.setdefault("token_delay", 0.05)
    options.setdefault("csr_sign_delay", 0.05)
    sim.controllers = Controllers(sim, **options)
    if start:
        sim.controllers.start()
    return sim


def wait_for(pred, timeout=15.0, interval=0.02):
    """Poll pred() until truthy; returns its value or raises AssertionError after timeout (a deadline, not a
    timing assertion)."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("condition not reached within %.1fs (last=%r)" % (timeout, last))
