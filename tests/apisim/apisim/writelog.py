"""The write log (/_sim/writes): every successful write answered by the server, in commit order, and the trap
that withholds the answer to the N-th matching write (the reliability suite kills a client there: the write is
committed, the client never learns it).

An entry: {seq, t (wall time), verb, resource, subresource, namespace, name, user, code, resourceVersion,
generation (workloads and every object that has one), holder (Leases: spec.holderIdentity after the write)}.
Reviews (TokenReview, SubjectAccessReview, ...) are not writes and are not logged.
"""

import collections
import threading
import time

WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
MAX_ENTRIES = 200000


class WriteLog:
    def __init__(self):
        self.lock = threading.Lock()
        self.entries = collections.deque(maxlen=MAX_ENTRIES)
        self.seq = 0
        self.trap = None  # {"after", "user", "exclude", "seen", "fired", "entry", "release"}

    def record(self, verb, resource, subresource, namespace, name, user, code, obj):
        """Appends one entry; blocks the caller (the handler, before its answer is sent) when it fires the trap,
        until the trap is released or 120 s passed."""
        md = (obj or {}).get("metadata") if isinstance(obj, dict) else None
        md = md if isinstance(md, dict) else {}
        if not name and isinstance(obj, dict):
            det = obj.get("details") if obj.get("kind") == "Status" else None
            name = md.get("name") or (det or {}).get("name") or ""
        e = {"verb": verb, "resource": resource, "subresource": subresource or "", "namespace": namespace or "",
             "name": name or "", "user": user, "code": code, "t": time.time(),
             "resourceVersion": md.get("resourceVersion", ""), "generation": md.get("generation")}
        if resource == "coordination.k8s.io/leases" and isinstance(obj, dict):
            e["holder"] = (obj.get("spec") or {}).get("holderIdentity") or ""
        release = None
        with self.lock:
            self.seq += 1
            e["seq"] = self.seq
            self.entries.append(e)
            tr = self.trap
            if tr is not None and not tr["fired"] and self._matches(tr, e):
                tr["seen"] += 1
                if tr["seen"] >= tr["after"]:
                    tr["fired"], tr["entry"] = True, dict(e)
                    release = tr["release"]
        if release is not None:
            release.wait(120)

    @staticmethod
    def _matches(tr, e):
        if tr["user"] and e["user"] != tr["user"]:
            return False
        return e["resource"] not in tr["exclude"]

    def since(self, seq):
        with self.lock:
            return [dict(e) for e in self.entries if e["seq"] > seq]

    def clear(self):
        with self.lock:
            self.entries.clear()

    def arm(self, after, user="", exclude=()):
        """The `after`-th matching write from now on is committed, then its answer is withheld."""
        self.disarm()
        with self.lock:
            self.trap = {"after": max(1, int(after)), "user": user or "", "exclude": set(exclude or ()), "seen": 0,
                         "fired": False, "entry": None, "release": threading.Event()}

    def disarm(self):
        """Releases a withheld answer (if any) and removes the trap; returns its last state."""
        with self.lock:
            tr, self.trap = self.trap, None
        if tr is not None:
            tr["release"].set()
        return self._state(tr)

    def state(self):
        with self.lock:
            return self._state(self.trap)

    @staticmethod
    def _state(tr):
        if tr is None:
            return {"armed": False, "fired": False}
        return {"armed": True, "after": tr["after"], "seen": tr["seen"], "fired": tr["fired"], "entry": tr["entry"]}
