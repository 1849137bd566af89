"""The fault-matrix harness: the seed cluster in apisim, kubemend in one mode (`run --once` or operator), chaos
while it runs, the restarts a user would do, then the end state compared with a clean run's.

    with Cluster("once", tmp) as c:             # seed loaded, (operator: crds/ + deploy/ installed, crec applied)
        c.chaos(Faults(code=503))               # fault controls of /_sim, on for the whole run
        c.drive(kills=[Kill(12), Kill(30)])     # chained SIGKILLs at write ordinals, then reruns until done
        r = c.finish()                          # chaos off, cluster settled, canonical end state -> Result

Kill points are write ordinals (the N-th successful write of kubemend's user, Events and Leases not counted): the
simulator commits that write and withholds its answer (/_sim/writes/trap); then kubemend is SIGKILLed, either at
once (the write is done, kubemend never learns it) or after a seeded delay with the answer released.  Seeded
points are reproducible: the same seed gives the same write ordinals.
"""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "apisim"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from apisim.testing import SimProcess  # noqa: E402
import kmop  # noqa: E402
import state  # noqa: E402

BIN = kmop.BIN
KUBELET_DELAY = "0.1"  # the simulated kubelet: pods Ready 0.1 s after scheduling (rollouts of the seed in seconds)
TRAP_EXCLUDE = ["events", "events.k8s.io/events", "coordination.k8s.io/leases"]
ADMIN = "kubernetes-admin"
OP_NS = "kubemend-system"
CREC = "reliability"
RUN_TIMEOUT = 240      # one kubemend run / one operator recovery
RESULTS = []           # Result.row() of every finished scenario run (conftest prints the table)


def sa_user(sa):
    return "system:serviceaccount:%s:%s" % (OP_NS, sa)


class Kill:
    """One SIGKILL: after the `after`-th write; answer_first: the answer is released and the kill follows
    `delay` seconds later (into whatever kubemend does next: a readiness wait, a list, the next write)."""

    def __init__(self, after, answer_first=False, delay=0.0):
        self.after, self.answer_first, self.delay = after, answer_first, delay

    def __repr__(self):
        return "Kill(%d%s)" % (self.after, ", +%.2fs" % self.delay if self.answer_first else "")


def seeded_kills(seed, total_writes, n, chain=1):
    """n kill chains of `chain` kills each, from random.Random(seed): the first at a write ordinal in
    [1, total_writes], each later one at an ordinal in [1, 4] counted from its restart (the restarted process is
    killed again soon: a rerun after a kill has less left to write), half of them with the answer withheld, half
    released and killed 0-1.5 s later."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        c = []
        for _ in range(chain):
            after = rng.randint(1, max(1, total_writes if not c else 4))
            c.append(Kill(after, True, round(rng.uniform(0, 1.5), 2)) if rng.random() < 0.5 else Kill(after))
        out.append(c)
    return out


class Chaos:
    """Server-side fault controls for the whole run.  faults: /_sim/faults rules; cut: watches cut after that
    many events; watch410: probability of a 410 on each watch; cont: continue tokens expiring (next|every, with
    the page cap so that the seed's lists have pages); restarts: write ordinals at which the apiserver restarts
    (connections dropped, watch cache forgotten, refused for downSeconds)."""

    def __init__(self, faults=None, cut=None, watch410=0.0, cont=None, page_cap=0, restarts=(), down=1.0,
                 timeout=None):
        self.faults, self.cut, self.watch410, self.timeout = faults or [], cut, watch410, timeout
        self.cont, self.page_cap, self.restarts, self.down = cont, page_cap, list(restarts), down

    def on(self, sim, seed=0):
        sim.sim("POST", "/_sim/faults", {"rules": self.faults, "seed": seed})
        if self.cut:
            sim.sim("POST", "/_sim/watch/cut", {"afterEvents": self.cut})
        if self.watch410:
            sim.sim("POST", "/_sim/watch/expire", {"rate": self.watch410})
        if self.page_cap:
            sim.sim("POST", "/_sim/list/page-cap", {"max": self.page_cap})
        if self.cont:
            sim.sim("POST", "/_sim/continue/expire", {"mode": self.cont})

    @staticmethod
    def off(sim):
        for _ in range(50):  # a restart with downtime may still refuse connections
            try:
                sim.sim("DELETE", "/_sim/faults")
                break
            except OSError:
                time.sleep(0.2)
        sim.sim("POST", "/_sim/watch/cut", {"afterEvents": None})
        sim.sim("POST", "/_sim/watch/expire", {"rate": 0})
        sim.sim("POST", "/_sim/list/page-cap", {"max": 0})
        sim.sim("POST", "/_sim/continue/expire", {"mode": "off"})


def faults(code=0, rate=0.1, latency_ms=0, retry_after=None):
    r = {"verb": "*", "resource": "*", "rate": rate}
    if code:
        r["code"] = code
    if latency_ms:
        r["latencyMs"] = latency_ms
    if retry_after is not None:
        r["retryAfter"] = retry_after
    return [r]


class Result:
    def __init__(self, scenario, mode, seed, diffs, lost, double, seconds, kills, runs, notes=""):
        self.scenario, self.mode, self.seed, self.diffs = scenario, mode, seed, diffs
        self.lost, self.double, self.seconds, self.kills, self.runs, self.notes = lost, double, seconds, kills, \
            runs, notes

    @property
    def exact(self):
        return not self.diffs

    def row(self):
        return {"scenario": self.scenario, "mode": self.mode, "seed": self.seed, "exact": self.exact,
                "lost": self.lost, "double": self.double, "seconds": round(self.seconds, 1), "kills": self.kills,
                "runs": self.runs, "diffs": [list(map(str, d)) for d in self.diffs][:20], "notes": self.notes}

    def explain(self):
        return "%s/%s seed %s: %d difference(s) from the clean run (lost %d, double %d); %s\n%s" % (
            self.scenario, self.mode, self.seed, len(self.diffs), self.lost, self.double, self.notes,
            "\n".join("  %s: clean %r, here %r" % d for d in self.diffs[:30]))


class Cluster:
    """The seed in apisim and kubemend in one mode; see the module doc."""

    def __init__(self, mode, tmp, scenario="clean", seed=0, replicas=1):
        assert mode in ("once", "operator")
        self.mode, self.tmp, self.scenario, self.seed, self.replicas = mode, str(tmp), scenario, seed, replicas
        self.procs, self.kills, self.runs, self.notes = [], 0, 0, []
        self.chaos_obj = None
        self.timeout = RUN_TIMEOUT
        self.t0 = time.time()

    # ---- setup -----------------------------------------------------------------------------------------------
    def __enter__(self):
        self.sim = SimProcess(scenario="seed", extra_args=["--kubelet-delay", KUBELET_DELAY]).start()
        try:
            if self.mode == "operator":
                kmop.install(self.sim)
                self.kubeconfigs = [self.replica_kubeconfig(i) for i in range(self.replicas)]
                self.sim.kubectl("apply", "--validate=false", "-f", "-", input=kmop.crec_yaml(CREC))
            else:
                self.kubeconfigs = [self.sim.kubeconfig]
            self.before = state.read(self.sim)
            self.sim.sim("DELETE", "/_sim/writes")
        except BaseException:
            self.sim.stop()
            raise
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.sim.stop()

    def replica_kubeconfig(self, i):
        """Replica i runs as ServiceAccount kubemend (i = 0) or kubemend-r<i>, added to every binding of deploy/
        that names kubemend, so the write log tells the replicas apart."""
        sa = "kubemend" if i == 0 else "kubemend-r%d" % i
        if i:
            self.sim.kubectl("create", "serviceaccount", "-n", OP_NS, sa)
            rbac = "/apis/rbac.authorization.k8s.io/v1/"
            for kind in ("clusterrolebindings", "rolebindings"):
                for b in state.items(self.sim, rbac + kind):
                    if not any(s.get("kind") == "ServiceAccount" and s.get("name") == "kubemend" and
                               s.get("namespace") == OP_NS for s in b.get("subjects") or []):
                        continue
                    md = b["metadata"]
                    path = rbac + ("namespaces/%s/" % md["namespace"] if md.get("namespace") else "") + kind + \
                        "/" + md["name"]
                    code, out = self.sim.request("PATCH", path, [{"op": "add", "path": "/subjects/-", "value": {
                        "kind": "ServiceAccount", "name": sa, "namespace": OP_NS}}],
                        headers={"Content-Type": "application/json-patch+json"})
                    assert code == 200, out
        return kmop.sa_kubeconfig(self.sim, OP_NS, sa)

    def user(self, i=0):
        if self.mode == "once":
            return ADMIN
        return sa_user("kubemend" if i == 0 else "kubemend-r%d" % i)

    def chaos(self, c):
        self.chaos_obj = c
        if c.timeout:
            self.timeout = c.timeout
        c.on(self.sim, self.seed)
        if c.restarts:
            threading.Thread(target=self._restarter, args=(list(c.restarts), c.down), daemon=True).start()

    def _restarter(self, points, down):
        """Restarts the simulated apiserver when kubemend's write count reaches each point."""
        while points and not getattr(self, "_done", False):
            try:
                _, body = self.sim.sim("GET", "/_sim/writes")
            except OSError:
                time.sleep(0.2)
                continue
            n = sum(1 for w in body["writes"] if w["resource"] not in TRAP_EXCLUDE and w["user"] == self.user())
            if n >= points[0]:
                points.pop(0)
                try:
                    self.sim.sim("POST", "/_sim/restart", {"downSeconds": down})
                    self.notes.append("apiserver restarted at write %d" % n)
                except OSError:
                    pass
            time.sleep(0.05)

    # ---- kubemend ----------------------------------------------------------------------------------------------
    def launch(self, i=0, leader_elect=False):
        self.runs += 1
        log = open(os.path.join(self.tmp, "kubemend-%d.log" % len(self.procs)), "w")
        if self.mode == "once":
            args = [BIN, "run", "--once", "-o", "json", "--kubeconfig", self.kubeconfigs[0]]
            out = open(os.path.join(self.tmp, "kubemend-%d.json" % len(self.procs)), "w")
        else:
            args = [BIN, "operator", "--kubeconfig", self.kubeconfigs[i], "--namespace", OP_NS,
                    "--metrics-bind-address", "0", "--health-probe-bind-address", "0"]
            if leader_elect:
                args.append("--leader-elect")
            out = log
        p = subprocess.Popen(args, stdout=out, stderr=log)
        p.logpath, p.replica = log.name, i
        self.procs.append(p)
        return p

    def done(self, p):
        """once: the process exited; operator: the ClusterRecovery completed (Succeeded, or Failed: the operator
        does not run a Failed recovery again)."""
        if self.mode == "once":
            return p.poll() is not None
        try:
            code, obj = self.sim.request("GET", "/apis/kubemend.io/v1alpha1/clusterrecoveries/" + CREC, timeout=10)
        except OSError:
            return False
        return code == 200 and (obj.get("status") or {}).get("phase") in ("Succeeded", "Failed")

    def kill(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=10)
            self.kills += 1

    def drive(self, kills=()):
        """Runs kubemend with the chain of kills (each kill hits the process started after the previous one),
        then restarts it as a user would: one more run (once) or a new operator process that must finish the
        recovery; a run that fails without being killed is not rerun (kubemend itself must ride out faults)."""
        for k in kills:
            self.sim.sim("POST", "/_sim/writes/trap", {"after": k.after, "user": self.user(),
                                                       "exclude": TRAP_EXCLUDE})
            p = self.launch()
            deadline = time.time() + RUN_TIMEOUT
            fired = False
            while time.time() < deadline and not self.done(p):
                if self.sim.sim("GET", "/_sim/writes/trap")[1]["fired"]:
                    fired = True
                    break
                time.sleep(0.02)
            if fired and k.answer_first:
                self.sim.sim("DELETE", "/_sim/writes/trap")
                time.sleep(k.delay)
            if fired:
                self.kill(p)
            self.sim.sim("DELETE", "/_sim/writes/trap")
            if not fired:
                self.notes.append("%r not reached" % k)
                self.stop(p)
                if self.mode == "once" and p.returncode == 0:
                    return
        self.run_to_completion()

    def leader(self):
        """(replica index, user) of the latest Lease holder according to the write log, or (None, None)."""
        _, body = self.sim.sim("GET", "/_sim/writes")
        for w in reversed(body["writes"]):
            if w["resource"] == "coordination.k8s.io/leases" and w.get("holder"):
                for i in range(self.replicas):
                    if self.user(i) == w["user"]:
                        return i, w["user"]
        return None, None

    def lead(self, kills):
        """Two replicas with --leader-elect; each kill SIGKILLs the replica holding the Lease at its kill point
        and starts a replacement (as a Deployment would: replicas 2, 3, ... each with its own ServiceAccount),
        then waits for the recovery to succeed.  self.replicas must be >= 2 + len(kills)."""
        running = {i: self.launch(i, leader_elect=True) for i in (0, 1)}
        nxt = 2
        for k in kills:
            deadline = time.time() + 60  # a killed leader's Lease expires after 15 s, then a standby takes it
            i, user = self.leader()
            while i not in running and time.time() < deadline:
                time.sleep(0.2)
                i, user = self.leader()
            if i not in running or self.done(running[i]):
                self.notes.append("%r: no leader or already done" % k)
                break
            self.sim.sim("POST", "/_sim/writes/trap", {"after": k.after, "user": user, "exclude": TRAP_EXCLUDE})
            deadline = time.time() + RUN_TIMEOUT
            fired = False
            while time.time() < deadline and not self.done(running[i]):
                if self.sim.sim("GET", "/_sim/writes/trap")[1]["fired"]:
                    fired = True
                    break
                time.sleep(0.02)
            if fired and k.answer_first:
                self.sim.sim("DELETE", "/_sim/writes/trap")
                time.sleep(k.delay)
            if fired:
                self.kill(running.pop(i))
            self.sim.sim("DELETE", "/_sim/writes/trap")
            if not fired:
                self.notes.append("%r not reached" % k)
                break
            running[nxt] = self.launch(nxt, leader_elect=True)
            nxt += 1
        deadline = time.time() + RUN_TIMEOUT
        any_p = next(iter(running.values()))
        while time.time() < deadline and not self.done(any_p):
            time.sleep(0.2)
        if not self.done(any_p):
            self.notes.append("recovery not Succeeded after %ds" % RUN_TIMEOUT)
        self.wait_verified()
        for p in running.values():
            self.stop(p)

    def two_leaders(self):
        """Writes (any resource but Leases) by a replica that was not the Lease holder at that point of the
        server's write order: two leaders acting at once.  [] when there were none."""
        holder, bad = None, []
        users = {self.user(i) for i in range(self.replicas)}
        for w in self.writes:
            if w["user"] not in users:
                continue
            if w["resource"] == "coordination.k8s.io/leases":
                if w.get("holder"):
                    holder = w["user"]
                continue
            if w["user"] != holder:
                bad.append("%s %s %s/%s by %s while %s held the Lease" % (w["verb"], w["resource"], w["namespace"],
                                                                          w["name"], w["user"], holder))
        return bad

    def run_to_completion(self):
        p = self.launch()
        if self.mode == "once":
            try:
                p.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.kill(p)
                self.notes.append("run timed out after %ds" % self.timeout)
            if p.returncode != 0:
                self.notes.append("run exited %s" % p.returncode)
            return
        deadline = time.time() + self.timeout
        while time.time() < deadline and not self.done(p):
            time.sleep(0.2)
        if not self.done(p):
            self.notes.append("recovery not completed after %ds" % self.timeout)
        self.wait_verified()
        self.stop(p)

    def wait_verified(self, timeout=120):
        """Operator mode: after Succeeded the operator re-checks everything (the Verified condition); it must
        not be stopped before that settled (True or False), or its SIGTERM cancels the checks."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                st = (kmop.get_crec(self.sim, CREC) or {}).get("status") or {}
            except OSError:
                st = {}
            if st.get("phase") == "Failed":
                return
            v = [c for c in st.get("conditions") or [] if c["type"] == "Verified"]
            if st.get("phase") == "Succeeded" and v and v[0]["status"] in ("True", "False"):
                return
            time.sleep(0.3)
        self.notes.append("Verified not settled after %ds" % timeout)

    def stop(self, p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill(p)

    def last_log(self):
        for p in reversed(self.procs):
            with open(p.logpath) as f:
                return f.read()
        return ""

    # ---- the end state -----------------------------------------------------------------------------------------
    def final_status_ok(self):
        """once: the last run exited 0 with phase Succeeded and every condition True; operator: the same of the
        ClusterRecovery (within 60 s: Verified follows Succeeded)."""
        if self.mode == "once":
            p = self.procs[-1]
            if p.returncode != 0:
                return False
            try:
                with open(os.path.join(self.tmp, "kubemend-%d.json" % (len(self.procs) - 1))) as f:
                    st = json.load(f)
            except ValueError:
                return False
            return st.get("phase") == "Succeeded" and all(c["status"] == "True" for c in st.get("conditions") or [])
        deadline = time.time() + 60  # the operator re-checks (Verified) after Succeeded
        while True:
            st = kmop.get_crec(self.sim, CREC)["status"]
            ok = st.get("phase") == "Succeeded" and all(c["status"] == "True" for c in st.get("conditions") or [])
            if ok or time.time() > deadline:
                return ok
            time.sleep(0.5)

    def finish(self, clean_end=None):
        """Chaos off, the cluster settled (at most 90 s), the canonical end state; with clean_end the Result."""
        self._done = True
        Chaos.off(self.sim)
        deadline = time.time() + 90
        while True:
            after = state.read(self.sim)
            moving = state.settled(after)
            if not moving or time.time() > deadline:
                break
            time.sleep(0.3)
        if moving:
            self.notes.append("not settled: " + moving)
        writes = self.sim.sim("GET", "/_sim/writes")[1]["writes"]
        self.writes = writes
        end = state.canonical(self.sim, self.before, after, writes, {self.user(i) for i in range(self.replicas)})
        end["status"] = "ok" if self.final_status_ok() else "not Succeeded"
        self.end = end
        if clean_end is None:
            return end
        diffs = state.diff(clean_end, end)
        lost, double = state.classify(clean_end, end)
        r = Result(self.scenario, self.mode, self.seed, diffs, lost, double, time.time() - self.t0, self.kills,
                   self.runs, "; ".join(self.notes))
        RESULTS.append(r.row())
        return r

    def product_writes(self, users):
        """Writes of these users, Events, Leases and the ClusterRecovery's own object excluded."""
        return [w for w in self.writes if w["user"] in users and w["resource"] not in TRAP_EXCLUDE
                and not w["resource"].startswith("kubemend.io/")]


def per_object(writes):
    """{"verb resource[/sub] ns/name": count} of write log entries."""
    out = {}
    for w in writes:
        k = "%s %s%s %s/%s" % (w["verb"], w["resource"], "/" + w["subresource"] if w["subresource"] else "",
                               w["namespace"], w["name"])
        out[k] = out.get(k, 0) + 1
    return out
