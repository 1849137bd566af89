"""The token prober: how many 401s the workloads of a real test cluster would see (issue 15's zero-downtime bar).

Nothing runs inside the simulated pods (tests/realk8s/realk8s/kubelet.py only posts their status), so each running
pod's in-cluster API client is modelled by the service-account token its process would hold, and that token is
checked about once a second with a TokenReview (as kubernetes-admin; the server's own verdict):

    prober = TokenProber(cp).start()           # before the disruption: it captures the tokens the pods start with
    ...                                        # the disaster, kubemend's recovery...
    prober.mark()                              # a new counting window (e.g. "bridge installed")
    ...                                        # what is measured
    res = prober.result()                      # {"probes", "unauthorized", "pods", "pods_401", "first_401", ...}
    prober.stop()

Which pods, which token (captured once per pod, the first round that sees it eligible):
- eligible: phase Running, no deletionTimestamp, not a mirror pod (annotation kubernetes.io/config.mirror; a
  static pod's process does not use a ServiceAccount). Pending pods are not captured yet, even once bound: no
  container process exists before the kubelet reports Running; they are captured by the round that sees them
  Running (at most `interval` after the simulated start). A pod first seen while being deleted is never captured:
  its process predates the prober, so the token it holds is unknown. Succeeded/Failed pods are not probed (their
  process has ended) and a captured one is dropped when it finishes.
- projected (ServiceAccount admission since 1.21: a projected volume with a serviceAccountToken source and no
  audience): a TokenRequest for the pod's ServiceAccount bound to the pod (boundObjectRef Pod name + uid,
  expirationSeconds 3600, API audiences) — what the kubelet writes into the volume. A serviceAccountToken source
  with its own audience is for another consumer, not the API client, and is ignored.
- legacy (< 1.21: a secret volume naming a Secret of type kubernetes.io/service-account-token, `<sa>-token-xxxxx`):
  the Secret's data.token read at first sight. This is the STRICT model of a client that reads its token file
  once at start and never again: a token Secret rewritten later (the recovery's fresh token) is not picked up, and
  since the server compares a legacy token with the Secret's copy (--service-account-lookup), the old one is then
  a 401 — as it is for such a client until its pod restarts. (The kubelet refreshes secret volumes within about a
  minute and client-go re-reads the file, so real clients fare at least as well.)
  When a pod has both kinds, the volume mounted at /var/run/secrets/kubernetes.io/serviceaccount wins.
- no token volume (automountServiceAccountToken false, or none of the above): never probed.
A capture that fails (Secret missing or without data.token yet, pod gone before its TokenRequest) is retried the
next round; such pods show in result()["uncaptured"] meanwhile.

Every round lists all pods (admin, limit=500 pages with continue) and reviews the token of every captured pod still
listed — pods being deleted included, their process runs through the grace period; a pod no longer listed (or
listed with another uid) is forgotten. A review answered `authenticated: false` is a 401 unless the pod is gone
when the round ends (one more list, only in rounds with a 401): the process had ended, nobody saw that 401.
A review that fails (transport error, 5xx, 429: e.g. bridge.py restarting kube-apiserver) is not a 401: any
exception ends the round, which counts one error and none of its probes; the thread goes on with the next round.
A window (start() or mark()) counts only the rounds that started in it, so nothing probed before mark() is
counted after it. Per pod only its key, uid, kind and token are kept.
"""

import base64
import threading
import time
import urllib.parse

from realk8s.client import ApiError

ANN_MIRROR = "kubernetes.io/config.mirror"
SA_TOKEN = "kubernetes.io/service-account-token"
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
LEGACY, PROJECTED = "legacy", "projected"
FINISHED = ("Succeeded", "Failed")
PAGE = 500
TIMEOUT = 10  # seconds per request of the prober's own (lists, Secret reads, TokenRequests)
SAMPLE = 20  # at most this many names in result()["uncaptured_sample"]


def pod_key(pod):
    m = pod.get("metadata") or {}
    return "%s/%s" % (m.get("namespace"), m.get("name"))


def eligible(pod):
    """Whether a pod's process runs with a token the prober can know now (see the module docstring)."""
    m = pod.get("metadata") or {}
    if ANN_MIRROR in (m.get("annotations") or {}) or m.get("deletionTimestamp"):
        return False
    return (pod.get("status") or {}).get("phase") == "Running"


def token_sources(pod):
    """Where the pod's API client gets its token, best first: [(PROJECTED, ServiceAccount name)] or
    [(LEGACY, Secret name), ...] (a secret volume's Secret is only known to be a token Secret once read), or []
    when no volume can hold one. Volumes mounted at the ServiceAccount mount path come first."""
    spec = pod.get("spec") or {}
    at_sa_mount = {m.get("name") for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
                   for m in c.get("volumeMounts") or [] if (m.get("mountPath") or "").rstrip("/") == SA_MOUNT}
    vols = sorted(spec.get("volumes") or [], key=lambda v: v.get("name") not in at_sa_mount)  # stable
    out = []
    for v in vols:
        proj = v.get("projected") or {}
        if any("serviceAccountToken" in s and not (s["serviceAccountToken"] or {}).get("audience")
               for s in proj.get("sources") or []):
            out.append((PROJECTED, spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"))
        elif (v.get("secret") or {}).get("secretName"):
            out.append((LEGACY, v["secret"]["secretName"]))
    return out


class _Pod:
    __slots__ = ("key", "uid", "kind", "token")

    def __init__(self, key, uid, kind, token):
        self.key, self.uid, self.kind, self.token = key, uid, kind, token


class TokenProber:
    """A background thread probing each running pod's token about every `interval` seconds (module docstring).
    Thread-safe: start(), stop(), mark(), result(), wait_rounds(), captured() from any thread."""

    def __init__(self, cp, interval=1.0):
        self.cp = cp
        self.interval = interval
        self._pods = {}  # uid -> _Pod (token None: no token mounted, never probed); only the thread writes it
        self._uncaptured = []  # keys of eligible pods whose capture failed in the last round
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread = None
        self._gen = 0
        self._reset()

    # ------------------------------------------------------------------ window
    def _reset(self):
        self._gen += 1
        self._t0 = time.monotonic()
        self._probes = self._unauthorized = self._rounds = self._errors = 0
        self._round_s_max = 0.0
        self._last_error = None
        self._probed = set()  # uids probed in the window
        self._pods_401 = set()  # keys
        self._first_401 = None

    def mark(self):
        """Start a new counting window (counters reset, captured tokens kept); returns the previous window's
        result()."""
        with self._cond:
            prev = self._result()
            self._reset()
            self._cond.notify_all()
            return prev

    def _result(self):
        return {"probes": self._probes, "unauthorized": self._unauthorized, "pods": len(self._probed),
                "pods_401": sorted(self._pods_401), "first_401": dict(self._first_401) if self._first_401 else None,
                "rounds": self._rounds, "round_s_max": round(self._round_s_max, 3), "errors": self._errors,
                "last_error": self._last_error, "window_s": round(time.monotonic() - self._t0, 1),
                "captured": sum(1 for p in self._pods.values() if p.token),
                "uncaptured": len(self._uncaptured), "uncaptured_sample": sorted(self._uncaptured)[:SAMPLE]}

    def result(self):
        """The current window: probes (reviews answered), unauthorized (answered authenticated: false), pods
        (distinct pods probed), pods_401 (sorted "ns/name" that saw a 401), first_401 ({pod, t: seconds into the
        window, error} or None), rounds (complete rounds), round_s_max, errors (failed rounds) and last_error,
        window_s; and now: captured (tokens held), uncaptured (eligible pods whose capture is being retried) with
        a sample of their names."""
        with self._cond:
            return self._result()

    def wait_rounds(self, n, timeout=60):
        """Block until the current window has n complete rounds; returns result(). Raises AssertionError (with
        the result) on timeout or when the thread is not running."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._rounds < n:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    raise AssertionError("token prober: %d of %d rounds after %ss: %s" % (
                        self._rounds, n, timeout, self._result()))
                self._cond.wait(min(left, 1.0))
            return self._result()

    def captured(self):
        """{"ns/name": "legacy" | "projected"} of the pods whose token is held now."""
        with self._lock:
            return {p.key: p.kind for p in self._pods.values() if p.token}

    # ------------------------------------------------------------------ thread
    def start(self):
        if self._thread is not None:
            raise RuntimeError("token prober already started")
        self._stop.clear()
        self.mark()
        self._thread = threading.Thread(target=self._run, name="token-prober", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=120):
        """Stop the thread and join it (a round in flight ends within its requests' timeouts)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("token prober did not stop within %ss" % timeout)
            self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _run(self):
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self._round()
            except Exception as e:  # noqa: BLE001 - apiserver restarts etc.: counted, never fatal
                with self._cond:
                    self._errors += 1
                    self._last_error = ("%s: %s" % (type(e).__name__, e))[:500]
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    # ------------------------------------------------------------------ one round
    def _list_pods(self, c):
        """{uid: pod} of every pod (paginated, one consistent snapshot)."""
        out, cont = {}, ""
        while True:
            path = "/api/v1/pods?limit=%d" % PAGE + ("&continue=" + urllib.parse.quote(cont) if cont else "")
            body = c.get(path, timeout=TIMEOUT)
            for p in body.get("items") or []:
                out[(p.get("metadata") or {}).get("uid")] = p
            cont = (body.get("metadata") or {}).get("continue")
            if not cont:
                return out

    def _capture(self, c, pod):
        """_Pod with the token (token None: no token mounted), or None to retry next round. Raises on a transport
        error or a 5xx/429 (the round fails)."""
        m = pod["metadata"]
        key, uid, ns = pod_key(pod), m["uid"], m["namespace"]
        sources = token_sources(pod)
        pending = False
        for kind, name in sources:
            if kind == PROJECTED:
                st, body = c.request("POST", "/api/v1/namespaces/%s/serviceaccounts/%s/token" % (
                    ns, urllib.parse.quote(name)), {
                    "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                    "spec": {"expirationSeconds": 3600,
                             "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": m["name"], "uid": uid}}},
                    timeout=TIMEOUT)
                if st in (200, 201) and ((body.get("status") or {}).get("token")):
                    return _Pod(key, uid, kind, body["status"]["token"])
                if st >= 500 or st == 429:
                    raise ApiError("POST", "serviceaccounts/%s/token" % name, st, body)
                return None  # the pod or its ServiceAccount is gone (404), ...: retried while it is listed
            st, sec = c.request("GET", "/api/v1/namespaces/%s/secrets/%s" % (ns, urllib.parse.quote(name)),
                                timeout=TIMEOUT)
            if st >= 500 or st == 429:
                raise ApiError("GET", "secrets/%s" % name, st, sec)
            if st != 200:
                pending = True  # missing: may be the token Secret (the kubelet would wait for it too)
                continue
            if sec.get("type") != SA_TOKEN:
                continue
            raw = (sec.get("data") or {}).get("token")
            if not raw:
                pending = True  # the tokens controller has not filled it yet
                continue
            return _Pod(key, uid, kind, base64.b64decode(raw).decode())
        return None if pending else _Pod(key, uid, None, None)

    def _round(self):
        with self._lock:
            gen = self._gen
        t0 = time.monotonic()
        c = self.cp.client()  # a new one after an apiserver restart or a PKI rebuild
        listed = self._list_pods(c)
        with self._lock:
            for uid in [u for u, p in self._pods.items()
                        if u not in listed or (listed[u].get("status") or {}).get("phase") in FINISHED]:
                del self._pods[uid]
        uncaptured = []
        for uid, pod in listed.items():
            if uid in self._pods or not eligible(pod):
                continue
            got = self._capture(c, pod)
            if got is None:
                uncaptured.append(pod_key(pod))
                continue
            with self._lock:
                self._pods[uid] = got
        with self._lock:
            self._uncaptured = uncaptured
            probing = [p for p in self._pods.values() if p.token]
        answers = []  # (pod, authenticated, error, monotonic time)
        for p in probing:
            st = self.cp.token_review(p.token)  # raises ApiError (5xx...) or OSError: the round fails
            answers.append((p, bool(st.get("authenticated")), st.get("error"), time.monotonic()))
        if not all(a[1] for a in answers):
            still = self._list_pods(c)
            answers = [a for a in answers if a[1] or a[0].uid in still]
        self._commit(gen, answers, time.monotonic() - t0)

    def _commit(self, gen, answers, seconds):
        with self._cond:
            if gen != self._gen:
                return  # started before mark(): belongs to no window
            self._rounds += 1
            self._round_s_max = max(self._round_s_max, seconds)
            for p, ok, err, t in answers:
                self._probes += 1
                self._probed.add(p.uid)
                if not ok:
                    self._unauthorized += 1
                    self._pods_401.add(p.key)
                    if self._first_401 is None:
                        self._first_401 = {"pod": p.key, "t": round(max(0.0, t - self._t0), 2), "error": err}
            self._cond.notify_all()
