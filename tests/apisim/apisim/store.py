"""Thread-safe in-memory object store with a global resourceVersion, watch history and garbage collection.

Stored objects are treated as immutable: every write stores a NEW dict, so readers inside the simulator may
hold references without copying.  Public get/list/create/update/... return deep copies (safe for callers).
"""

import bisect
import collections
import datetime
import queue
import random
import threading
import time
import uuid

from . import errors

from .resources import Registry, apply_defaults


def clone(o):
    """Fast deep copy of JSON-like data."""
    if isinstance(o, dict):
        return {k: clone(v) for k, v in o.items()}
    if isinstance(o, list):
        return [clone(v) for v in o]
    return o


def now_rfc3339(offset=0.0):
    t = datetime.datetime.fromtimestamp(int(time.time() + offset), datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text):
    try:
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        return datetime.datetime.fromisoformat(text).timestamp()
    except (ValueError, AttributeError):
        return None


Event = collections.namedtuple("Event", "type rv res obj prev")


class _Table:
    __slots__ = ("objs", "sorted", "history", "oldest_rv", "watchers", "pending")

    def __init__(self, history_size, rv):
        self.objs = {}
        self.sorted = None
        self.history = collections.deque(maxlen=history_size)
        self.oldest_rv = rv
        self.watchers = set()
        self.pending = 0


# Resources whose registry implements Delete itself (no deletionGracePeriodSeconds, no generation bump)
OWN_DELETE = ("namespaces", "apiextensions.k8s.io/customresourcedefinitions")

# Resources stored in another resource's table (one object, several APIs): events.k8s.io Events are core Events.
STORAGE_ALIAS = {"events.k8s.io/events": "events"}


class _Tables(dict):
    """res -> _Table, with STORAGE_ALIAS applied to every key."""

    def get(self, res, default=None):
        return super().get(STORAGE_ALIAS.get(res, res), default)

    def __getitem__(self, res):
        return super().__getitem__(STORAGE_ALIAS.get(res, res))

    def __setitem__(self, res, value):
        super().__setitem__(STORAGE_ALIAS.get(res, res), value)

    def __contains__(self, res):
        return super().__contains__(STORAGE_ALIAS.get(res, res))


def obj_key(obj):
    md = obj.get("metadata") or {}
    ns = md.get("namespace") or ""
    return (ns + "/" + md.get("name", "")) if ns else md.get("name", "")


def make_key(ns, name):
    return (ns + "/" + name) if ns else name


_GEN_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def random_suffix(n=5):
    import random
    return "".join(random.choice(_GEN_CHARS) for _ in range(n))


def _spec_part(obj):
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "kind", "apiVersion")}


class Store:
    def __init__(self, registry=None, history_size=10000, start_rv=1):
        self.registry = registry if registry is not None else (Registry() if Registry else None)
        self.lock = threading.RLock()
        self._rv = start_rv
        self._tables = _Tables()
        self._history_size = history_size
        self._listeners = []
        self._prepare_hooks = {}   # res -> [fn(op, new, old)] called under lock before commit
        self._commit_hooks = []    # fn(event) called under lock after commit (must be cheap)
        self._owner_index = collections.defaultdict(set)  # owner uid -> {(res, key)}
        self._dispatch_q = queue.Queue()
        self._uid_rng = random.Random()  # uids (used under the lock; seeded from os.urandom)
        # seconds added to the creationTimestamp of new objects: scenarios backdate what existed before a PKI
        # rebuild (0 while serving)
        self.creation_offset = 0.0
        self._gc_q = queue.Queue()
        self._stopped = False
        self.compact_rv = 0            # continue tokens older than this -> 410
        self.down_nodes = set()        # nodes marked down by /_sim/nodes/<n>/down (read by the kubelet)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="store-dispatch", daemon=True)
        self._dispatcher.start()
        self._gc = threading.Thread(target=self._gc_loop, name="store-gc", daemon=True)
        self._gc.start()

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def now(offset=0.0):
        return now_rfc3339(offset)

    def _info(self, res):
        return self.registry.by_key(STORAGE_ALIAS.get(res, res)) if self.registry is not None else None

    def _table(self, res):
        t = self._tables.get(res)
        if t is None:
            t = _Table(self._history_size, self._rv)
            self._tables[res] = t
        return t

    def _sorted(self, t):
        if t.sorted is None:
            t.sorted = sorted(t.objs)
            t.pending = 0
        return t.sorted

    def current_rv(self):
        with self.lock:
            return self._rv

    def _next_rv(self):
        self._rv += 1
        return self._rv

    def stop(self):
        self._stopped = True
        self._dispatch_q.put(None)
        self._gc_q.put(None)

    # ------------------------------------------------------------------ listeners / hooks
    def add_listener(self, fn):
        with self.lock:
            self._listeners.append(fn)

    def add_prepare_hook(self, res, fn):
        with self.lock:
            self._prepare_hooks.setdefault(res, []).append(fn)

    def add_commit_hook(self, fn):
        with self.lock:
            self._commit_hooks.append(fn)

    def _dispatch_loop(self):
        while True:
            ev = self._dispatch_q.get()
            if ev is None:
                return
            listeners = list(self._listeners)
            if not listeners:
                continue
            for fn in listeners:
                try:
                    fn(ev.type, ev.res, clone(ev.obj))
                except Exception:  # noqa: BLE001 - a listener bug must not kill dispatch
                    import traceback
                    traceback.print_exc()

    def _commit(self, res, t, typ, key, obj, prev):
        """Store obj (None for delete) under key and emit the event. Caller holds the lock."""
        res = STORAGE_ALIAS.get(res, res)
        if typ == "DELETED":
            del t.objs[key]
            if t.sorted is not None:
                i = bisect.bisect_left(t.sorted, key)
                if i < len(t.sorted) and t.sorted[i] == key:
                    del t.sorted[i]
        else:
            if key not in t.objs and t.sorted is not None:
                t.pending += 1
                if t.pending > 1000:
                    t.sorted = None  # many inserts: re-sort lazily on the next read (cheap, nearly sorted)
                else:
                    bisect.insort(t.sorted, key)
            t.objs[key] = obj
        self._index_owners(res, key, prev, obj if typ != "DELETED" else None)
        ev = Event(typ, int(obj["metadata"]["resourceVersion"]), res, obj, prev)
        if len(t.history) == t.history.maxlen:
            t.oldest_rv = t.history[0].rv
        t.history.append(ev)
        for w in list(t.watchers):
            w.push(ev)
        for fn in self._commit_hooks:
            fn(ev)
        self._dispatch_q.put(ev)
        if typ == "DELETED" or (obj.get("metadata", {}).get("deletionTimestamp")):
            self._gc_q.put(ev)
        return ev

    def _index_owners(self, res, key, old, new):
        old_uids = {r.get("uid") for r in ((old or {}).get("metadata", {}).get("ownerReferences") or [])}
        new_uids = {r.get("uid") for r in ((new or {}).get("metadata", {}).get("ownerReferences") or [])}
        for u in old_uids - new_uids:
            s = self._owner_index.get(u)
            if s is not None:
                s.discard((res, key))
                if not s:
                    del self._owner_index[u]
        for u in new_uids - old_uids:
            if u:
                self._owner_index[u].add((res, key))

    # ------------------------------------------------------------------ reads
    def get(self, res, ns, name):
        with self.lock:
            t = self._tables.get(res)
            o = t.objs.get(make_key(ns, name)) if t else None
            return clone(o) if o is not None else None

    def get_ref(self, res, ns, name):
        """Internal: the stored (immutable) dict, no copy. Do not modify."""
        with self.lock:
            t = self._tables.get(res)
            return t.objs.get(make_key(ns, name)) if t else None

    def list(self, res, ns=None):
        return [clone(o) for o in self.list_refs(res, ns)]

    def list_refs(self, res, ns=None):
        with self.lock:
            t = self._tables.get(res)
            if not t:
                return []
            keys = self._sorted(t)
            lo, hi = self._range(keys, ns)
            return [t.objs[k] for k in keys[lo:hi]]

    def count(self, res, ns=None):
        with self.lock:
            t = self._tables.get(res)
            if not t:
                return 0
            if not ns:
                return len(t.objs)
            lo, hi = self._range(self._sorted(t), ns)
            return hi - lo

    @staticmethod
    def _range(keys, ns):
        if not ns:
            return 0, len(keys)
        lo = bisect.bisect_left(keys, ns + "/")
        hi = bisect.bisect_left(keys, ns + "0")  # '0' == '/' + 1
        return lo, hi

    def list_page(self, res, ns=None, start=None, limit=0, pred=None):
        """Paged list over sorted keys, page boundaries as kube-apiserver's etcd3 store (GetList).

        start: first key to consider, relative to the namespace prefix (the continue token's 'start', e.g.
        "app1/worker\x00") or None.  Returns (refs, next_start or None if no more, remaining_count or None, rv);
        remaining_count is None when a predicate (selector) is used, like the real server.
        Like etcd3's GetList the keys are read in batches (limit, doubled while a selector drops items, at most
        10000): the list continues after the last key EXAMINED whenever keys remain after it, even if none of
        them match."""
        with self.lock:
            rv = self._rv
            t = self._tables.get(res)
            if not t:
                return [], None, None, rv
            keys = self._sorted(t)
            lo, hi = self._range(keys, ns)
            prefix = (ns + "/") if ns else ""
            if start is not None:
                lo = max(lo, bisect.bisect_left(keys, prefix + start, lo, hi))
            out = []
            if not limit:
                for k in keys[lo:hi]:
                    o = t.objs[k]
                    if pred is None or pred(o):
                        out.append(o)
                return out, None, None, rv
            pos, batch, last, has_more = lo, limit, None, False
            while True:
                end = min(pos + batch, hi)
                has_more = end < hi
                i = pos
                while i < end:
                    if len(out) >= limit:
                        has_more = True
                        break
                    k = keys[i]
                    last = i
                    i += 1
                    o = t.objs[k]
                    if pred is None or pred(o):
                        out.append(o)
                if not has_more or len(out) >= limit:
                    break
                pos = end
                batch = min(batch * 2, 10000)
            if not has_more:
                return out, None, None, rv
            remaining = (hi - last - 1) if pred is None else None
            return out, keys[last][len(prefix):] + "\x00", remaining, rv

    # ------------------------------------------------------------------ writes
    def _normalize_new(self, info, res, obj, namespace):
        """apiVersion/kind/namespace/defaults of an object about to be created (no lock needed)."""
        md = obj.setdefault("metadata", {})
        if namespace is not None:
            md["namespace"] = namespace
        if info is not None and not info.namespaced:
            md.pop("namespace", None)
        if info is not None:
            obj["apiVersion"] = info.api_version()
            obj["kind"] = info.kind
        if apply_defaults is not None:
            apply_defaults(res, obj, getattr(self.registry, "profile", "modern"))
        return md

    def _insert_new(self, info, res, t, obj, md, dry_run):
        """Names, uid, timestamps and the commit of a new object.  Caller holds the lock."""
        if not md.get("name") and md.get("generateName"):
            for _ in range(50):
                cand = md["generateName"] + random_suffix()
                if make_key(md.get("namespace", ""), cand) not in t.objs:
                    md["name"] = cand
                    break
        if not md.get("name"):
            raise errors.invalid(info.kind if info else res, "", [errors.field_required(
                "metadata.name", "name or generateName is required")])
        key = obj_key(obj)
        if key in t.objs:
            raise errors.already_exists(info or res, md["name"])
        for f in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            md.pop(f, None)
        md["uid"] = str(uuid.UUID(int=self._uid_rng.getrandbits(128), version=4))
        md["creationTimestamp"] = now_rfc3339(self.creation_offset)
        if info is not None and info.has_generation:
            md["generation"] = 1
        else:
            md.pop("generation", None)
        if info is not None and info.status_subresource and info.is_crd:
            obj.pop("status", None)
        for fn in self._prepare_hooks.get(res, ()):
            fn("create", obj, None)
        if dry_run:
            md["resourceVersion"] = str(self._rv)
            return
        md["resourceVersion"] = str(self._next_rv())
        self._commit(res, t, "ADDED", key, obj, None)

    def create(self, res, obj, *, dry_run=False, namespace=None):
        info = self._info(res)
        obj = clone(obj)
        md = self._normalize_new(info, res, obj, namespace)
        with self.lock:
            self._insert_new(info, res, self._table(res), obj, md, dry_run)
            return clone(obj)

    def bulk_create(self, res, objs):
        """Fast path for scenario loading: create() for each object, but it TAKES OWNERSHIP of the
        dicts (no copies in or out; callers must not touch them afterwards) and returns nothing.
        Raises ApiError like create() (objects before the failing one stay created)."""
        info = self._info(res)
        mds = [self._normalize_new(info, res, obj, None) for obj in objs]
        with self.lock:
            t = self._table(res)
            for obj, md in zip(objs, mds):
                self._insert_new(info, res, t, obj, md, False)

    def update(self, res, obj, *, subresource=None, check_rv=True, dry_run=False):
        info = self._info(res)
        obj = clone(obj)
        md = obj.get("metadata") or {}
        with self.lock:
            t = self._table(res)
            key = obj_key(obj)
            if info is not None and not info.namespaced:
                key = md.get("name", "")
            old = t.objs.get(key)
            if old is None:
                raise errors.not_found(info or res, md.get("name", ""))
            want_rv = md.get("resourceVersion")
            if check_rv and want_rv not in (None, "") and want_rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(info or res, md.get("name", ""))
            new = self._merge_update(info, old, obj, subresource)
            for fn in self._prepare_hooks.get(res, ()):
                fn("update" if not subresource else "update/" + subresource, new, old)
            return self._write(res, t, key, old, new, dry_run)

    def _merge_update(self, info, old, obj, subresource):
        omd = old["metadata"]
        if subresource in ("status",) or (subresource and subresource != "status"):
            if subresource == "status" or subresource == "approval":
                new = clone(old)
                if subresource == "approval":
                    st = clone(new.get("status") or {})
                    st["conditions"] = clone((obj.get("status") or {}).get("conditions") or [])
                    new["status"] = st
                else:
                    if "status" in obj:
                        new["status"] = clone(obj["status"])
                    else:
                        new.pop("status", None)
                    if info is not None and info.key == "pods":
                        # 1.19 pod status strategy keeps spec but takes metadata (labels/annotations) from the body
                        nmd = obj.get("metadata") or {}
                        for f in ("labels", "annotations"):
                            if f in nmd:
                                new["metadata"][f] = clone(nmd[f])
                            else:
                                new["metadata"].pop(f, None)
                return new
        new = clone(obj)
        if info is not None:
            new["apiVersion"] = info.api_version()
            new["kind"] = info.kind
        nmd = new.setdefault("metadata", {})
        for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation",
                  "namespace", "name", "selfLink"):
            if f in omd:
                nmd[f] = omd[f]
            else:
                nmd.pop(f, None)
        if info is not None and info.status_subresource:
            if "status" in old:
                new["status"] = clone(old["status"])
            else:
                new.pop("status", None)
        return new

    def _write(self, res, t, key, old, new, dry_run, allow_finalize=True):
        info = self._info(res)
        nmd = new["metadata"]
        if info is not None and info.has_generation and _spec_part(new) != _spec_part(old):
            nmd["generation"] = int(old["metadata"].get("generation") or 1) + 1
        if new == old or (dry_run):
            if dry_run:
                return clone(new)
            return clone(old)
        nmd["resourceVersion"] = str(self._next_rv())
        if allow_finalize and nmd.get("deletionTimestamp") and not nmd.get("finalizers") and \
                not nmd.get("deletionGracePeriodSeconds"):
            self._commit(res, t, "DELETED", key, new, old)
            return clone(new)
        self._commit(res, t, "MODIFIED", key, new, old)
        return clone(new)

    def mutate(self, res, ns, name, fn, *, subresource=None):
        """Atomic read-modify-write: fn(copy) edits in place (return False to skip). None if missing."""
        with self.lock:
            t = self._table(res)
            key = make_key(ns or "", name)
            old = t.objs.get(key)
            if old is None:
                return None
            work = clone(old)
            if fn(work) is False:
                return clone(old)
            info = self._info(res)
            wmd = work.setdefault("metadata", {})
            for f in ("uid", "creationTimestamp", "name", "namespace"):
                if f in old["metadata"]:
                    wmd[f] = old["metadata"][f]
            if subresource == "status":
                new = clone(old)
                if "status" in work:
                    new["status"] = work["status"]
                else:
                    new.pop("status", None)
            elif subresource is None and info is not None and info.status_subresource and False:
                new = work
            else:
                new = work
            wmd = new["metadata"]
            if info is not None and not info.has_generation:
                wmd.pop("generation", None)
            elif info is not None:
                wmd["generation"] = old["metadata"].get("generation", 1)
            return self._write(res, t, key, old, new, False)

    def delete(self, res, ns, name, *, grace_seconds=None, preconditions=None, propagation=None, dry_run=False):
        """Returns (deleted_now, obj). Pods bound to a node with grace>0 only get deletionTimestamp."""
        info = self._info(res)
        with self.lock:
            t = self._table(res)
            key = make_key(ns or "", name)
            old = t.objs.get(key)
            if old is None:
                raise errors.not_found(info or res, name)
            omd = old["metadata"]
            pre = preconditions or {}
            if pre.get("uid") and pre["uid"] != omd.get("uid"):
                raise errors.precondition_uid(info or res, name, pre["uid"], omd.get("uid"))
            if pre.get("resourceVersion") and pre["resourceVersion"] != omd.get("resourceVersion"):
                raise errors.precondition_rv(info or res, name, pre["resourceVersion"], omd.get("resourceVersion"))
            grace = 0
            if res == "pods":
                spec = old.get("spec") or {}
                default = spec.get("terminationGracePeriodSeconds")
                grace = int(grace_seconds) if grace_seconds is not None else int(30 if default is None else default)
                phase = (old.get("status") or {}).get("phase")
                if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
                    grace = 0
                if grace < 0:
                    grace = 0
            new = clone(old)
            nmd = new["metadata"]
            finalizers = list(nmd.get("finalizers") or [])
            if propagation == "Foreground" and "foregroundDeletion" not in finalizers and \
                    self._owner_index.get(omd.get("uid")):
                finalizers.append("foregroundDeletion")
            elif propagation == "Orphan" and "orphan" not in finalizers and self._owner_index.get(omd.get("uid")):
                finalizers.append("orphan")
            if res == "namespaces":
                new.setdefault("status", {})["phase"] = "Terminating"
                if "kubernetes" in ((new.get("spec") or {}).get("finalizers") or []):
                    if "kubernetes" not in finalizers:
                        pass
            if res == "apiextensions.k8s.io/customresourcedefinitions" and \
                    "customresourcecleanup.apiextensions.k8s.io" not in finalizers and not omd.get("deletionTimestamp"):
                finalizers.append("customresourcecleanup.apiextensions.k8s.io")
                conds = (new.setdefault("status", {}).get("conditions") or [])
                conds = [c for c in conds if c.get("type") != "Terminating"]
                conds.append({"type": "Terminating", "status": "True", "lastTransitionTime": now_rfc3339(),
                              "reason": "InstanceDeletionPending",
                              "message": "CustomResourceDefinition marked for deletion; CustomResource deletion "
                                         "will begin soon"})
                new["status"]["conditions"] = conds
            if finalizers:
                nmd["finalizers"] = finalizers
            ns_pending = res == "namespaces" and ((new.get("spec") or {}).get("finalizers") or [])
            if omd.get("deletionTimestamp"):
                # already deleting: only a shorter grace period changes anything
                old_grace = int(omd.get("deletionGracePeriodSeconds") or 0)
                if res == "pods" and grace < old_grace:
                    start = (parse_rfc3339(omd["deletionTimestamp"]) or time.time()) - old_grace
                    nmd["deletionTimestamp"] = datetime.datetime.fromtimestamp(
                        int(start + grace), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                    nmd["deletionGracePeriodSeconds"] = grace
                else:
                    if nmd.get("finalizers") == omd.get("finalizers"):
                        return False, clone(old)
                if dry_run:
                    return False, clone(new)
                if grace == 0 and not nmd.get("finalizers") and not ns_pending:
                    nmd["resourceVersion"] = str(self._next_rv())
                    self._commit(res, t, "DELETED", key, new, old)
                    return True, clone(new)
                return False, self._write(res, t, key, old, new, False, allow_finalize=False)
            nmd["deletionTimestamp"] = now_rfc3339(grace)
            if res not in OWN_DELETE:
                nmd["deletionGracePeriodSeconds"] = grace
                if res != "pods" and (finalizers or ns_pending) and nmd.get("generation"):
                    nmd["generation"] = int(nmd["generation"]) + 1  # markAsDeleting
            if dry_run:
                if res != "pods" and not finalizers and not ns_pending:
                    nmd.pop("deletionTimestamp", None)
                    nmd.pop("deletionGracePeriodSeconds", None)
                return (not finalizers and grace == 0 and not ns_pending), clone(new)
            if finalizers or grace > 0 or ns_pending:
                nmd["resourceVersion"] = str(self._next_rv())
                self._commit(res, t, "MODIFIED", key, new, old)
                return False, clone(new)
            if res != "pods":
                # only kinds with graceful deletion (pods) carry deletionTimestamp in the final state
                nmd.pop("deletionTimestamp", None)
                nmd.pop("deletionGracePeriodSeconds", None)
            nmd["resourceVersion"] = str(self._next_rv())
            self._commit(res, t, "DELETED", key, new, old)
            return True, clone(new)

    def finalize_delete(self, res, ns, name):
        """Remove an object whose deletionTimestamp is set and has no finalizers (kubelet use). True if removed."""
        with self.lock:
            t = self._table(res)
            key = make_key(ns or "", name)
            old = t.objs.get(key)
            if old is None or not old["metadata"].get("deletionTimestamp") or old["metadata"].get("finalizers"):
                return False
            new = clone(old)
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            self._commit(res, t, "DELETED", key, new, old)
            return True

    def _remove_now(self, res, key):
        """Internal (GC / namespace controller): drop an object regardless of grace."""
        with self.lock:
            t = self._tables.get(res)
            old = t.objs.get(key) if t else None
            if old is None:
                return
            new = clone(old)
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            self._commit(res, t, "DELETED", key, new, old)

    # ------------------------------------------------------------------ watch support
    def watch_register(self, res, watcher, from_rv):
        """Register `watcher` (has .push(Event)) for res.

        from_rv None -> returns ("snapshot", [refs...]) of current objects (caller sends synthetic ADDED);
        int -> ("events", [Event...]) newer than from_rv, or ("expired", oldest_rv) if too old."""
        with self.lock:
            t = self._table(res)
            ns = getattr(watcher, "ns", None) or None
            if from_rv is None:
                keys = self._sorted(t)
                lo, hi = self._range(keys, ns)
                snap = [t.objs[k] for k in keys[lo:hi]]
                t.watchers.add(watcher)
                return "snapshot", snap, self._rv
            if from_rv < t.oldest_rv:
                return "expired", t.oldest_rv, self._rv
            evs = [e for e in t.history if e.rv > from_rv and
                   (ns is None or (e.obj.get("metadata") or {}).get("namespace") == ns)]
            t.watchers.add(watcher)
            return "events", evs, self._rv

    def watch_unregister(self, res, watcher):
        with self.lock:
            t = self._tables.get(res)
            if t is not None:
                t.watchers.discard(watcher)

    def all_watchers(self):
        with self.lock:
            out = []
            for t in self._tables.values():
                out.extend(t.watchers)
            return out

    def forget_history(self):
        """Simulated apiserver restart: the watch cache starts empty at the current RV."""
        with self.lock:
            for t in self._tables.values():
                t.history.clear()
                t.oldest_rv = self._rv

    def compact(self, rv=None):
        """Simulated etcd compaction: continue tokens with an older RV expire."""
        with self.lock:
            self.compact_rv = self._rv if rv is None else rv

    def resources(self):
        with self.lock:
            return list(self._tables.keys())

    # ------------------------------------------------------------------ garbage collection / namespace / CRD cleanup
    def _gc_loop(self):
        while True:
            ev = self._gc_q.get()
            if ev is None:
                return
            try:
                self._gc_handle(ev)
            except Exception:  # noqa: BLE001
                import traceback
                traceback.print_exc()

    def _dependents(self, uid):
        with self.lock:
            return list(self._owner_index.get(uid, ()))

    def _gc_handle(self, ev):
        md = ev.obj.get("metadata", {})
        uid = md.get("uid")
        if ev.type == "DELETED":
            for dres, dkey in self._dependents(uid):
                ns, _, name = dkey.rpartition("/")
                try:
                    self.delete(dres, ns, name, propagation="Background")
                except errors.ApiError:
                    pass
            if ev.res == "apiextensions.k8s.io/customresourcedefinitions":
                pass
            return
        # object is being deleted (deletionTimestamp set)
        fins = md.get("finalizers") or []
        if "orphan" in fins:
            for dres, dkey in self._dependents(uid):
                ns, _, name = dkey.rpartition("/")
                self.mutate(dres, ns, name, lambda o: o["metadata"].__setitem__("ownerReferences", [
                    r for r in o["metadata"].get("ownerReferences", []) if r.get("uid") != uid]) or
                    (None if o["metadata"]["ownerReferences"] else o["metadata"].pop("ownerReferences")))
            self._drop_finalizer(ev.res, md, "orphan")
        if "foregroundDeletion" in fins:
            deps = self._dependents(uid)
            for dres, dkey in deps:
                ns, _, name = dkey.rpartition("/")
                try:
                    self.delete(dres, ns, name, propagation="Foreground")
                except errors.ApiError:
                    pass
            self._retry_later(ev, lambda: not self._dependents(uid),
                              lambda: self._drop_finalizer(ev.res, md, "foregroundDeletion"))
        if ev.res == "namespaces":
            self._namespace_cleanup(ev, md)
        if ev.res == "apiextensions.k8s.io/customresourcedefinitions" and \
                "customresourcecleanup.apiextensions.k8s.io" in fins:
            self._crd_cleanup(ev)

    def _retry_later(self, ev, cond, action, delay=0.2, tries=300):
        def run():
            for _ in range(tries):
                if self._stopped:
                    return
                if cond():
                    action()
                    return
                time.sleep(delay)
        threading.Thread(target=run, daemon=True).start()

    def _drop_finalizer(self, res, md, fin):
        def fn(o):
            f = [x for x in (o["metadata"].get("finalizers") or []) if x != fin]
            if f:
                o["metadata"]["finalizers"] = f
            else:
                o["metadata"].pop("finalizers", None)
        with self.lock:
            t = self._tables.get(res)
            key = make_key(md.get("namespace", ""), md.get("name", ""))
            old = t.objs.get(key) if t else None
            if old is None or old["metadata"].get("uid") != md.get("uid"):
                return
            new = clone(old)
            fn(new)
            self._write(res, t, key, old, new, False)

    def _namespace_cleanup(self, ev, md):
        ns = md.get("name")

        def purge():
            with self.lock:
                tables = [(r, t) for r, t in self._tables.items()]
            left = 0
            for res, t in tables:
                info = self._info(res)
                if info is not None and not info.namespaced:
                    continue
                with self.lock:
                    lo, hi = self._range(self._sorted(t), ns)
                    keys = list(self._sorted(t)[lo:hi])
                for k in keys:
                    left += 1
                    name = k[len(ns) + 1:]
                    try:
                        self.delete(res, ns, name, grace_seconds=None)
                    except errors.ApiError:
                        pass
            return left

        purge()

        def empty():
            with self.lock:
                for res, t in self._tables.items():
                    if res == "namespaces":
                        continue
                    keys = self._sorted(t)
                    lo, hi = self._range(keys, ns)
                    if hi > lo:
                        return False
            return True

        def finish():
            with self.lock:
                t = self._tables.get("namespaces")
                old = t.objs.get(ns) if t else None
                if old is None or old["metadata"].get("uid") != md.get("uid"):
                    return
                new = clone(old)
                self._write_finalized_ns(t, old, new)

        self._retry_later(ev, lambda: empty() or (purge() and False), finish)

    def _write_finalized_ns(self, t, old, new):
        new.setdefault("spec", {})["finalizers"] = []
        new["metadata"]["resourceVersion"] = str(self._next_rv())
        if new["metadata"].get("finalizers"):
            self._commit("namespaces", t, "MODIFIED", old["metadata"]["name"], new, old)
        else:
            self._commit("namespaces", t, "DELETED", old["metadata"]["name"], new, old)

    def _crd_cleanup(self, ev):
        spec = ev.obj.get("spec") or {}
        res = spec.get("group", "") + "/" + (spec.get("names") or {}).get("plural", "")
        with self.lock:
            t = self._tables.get(res)
            keys = list(t.objs) if t else []
        for k in keys:
            ns, _, name = k.rpartition("/")
            try:
                self.delete(res, ns, name)
            except errors.ApiError:
                pass

        def empty():
            with self.lock:
                t2 = self._tables.get(res)
                return not t2 or not t2.objs

        md = ev.obj["metadata"]
        self._retry_later(ev, empty, lambda: self._drop_finalizer(
            ev.res, md, "customresourcecleanup.apiextensions.k8s.io"))

    # ------------------------------------------------------------------ dump
    def dump(self):
        with self.lock:
            return {res: [t.objs[k] for k in self._sorted(t)] for res, t in self._tables.items() if t.objs}
