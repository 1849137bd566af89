"""The list+watch state machine (watch/watcher.c) through build/tools/kmwatch against tests/apisim:
watches survive cut streams, forced 410s (with deletes missed while disconnected) and a simulator
restart, without missing or duplicating work: the final store equals the server's list and no
(key, resourceVersion) is delivered twice."""

import json
import os
import queue
import subprocess
import sys
import threading
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "apisim"))
try:
    from apisim.testing import SimProcess
except ImportError:  # pragma: no cover - only while the simulator is being written
    SimProcess = None

pytestmark = pytest.mark.skipif(SimProcess is None,
                                reason="tests/apisim/apisim/testing.py (SimProcess) does not exist")

NS = "wt"
PATH = "/api/v1/namespaces/%s/configmaps" % NS
WAIT = 60  # hang guard for every wait (never a timing assertion)


class Kmwatch:
    """kmwatch as a subprocess; its JSON lines are collected by a reader thread."""

    def __init__(self, tools_dir, kubeconfig, path, *extra):
        args = [os.path.join(tools_dir, "kmwatch"), "--kubeconfig", kubeconfig, "--store",
                "--backoff-initial", "0.05", "--backoff-max", "0.2", "--timeout-min", "5",
                "--timeout-max", "8", "--page-size", "3", "--log-level", "debug"] + list(extra) + [path]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self.events = []  # (type, key, rv) in delivery order
        self.synced = 0
        self.stderr = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            if "event" in msg:
                self.events.append((msg["event"], msg["key"], msg["rv"]))
            if msg.get("synced"):
                self.synced += 1
            self.lines.put(msg)

    def _read_err(self):
        for line in self.proc.stderr:
            self.stderr.append(line)

    def wait_for(self, pred, what):
        deadline = time.time() + WAIT
        while time.time() < deadline:
            try:
                msg = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, "kmwatch exited: %s" % "".join(self.stderr[-20:])
                continue
            if pred(msg):
                return msg
        raise AssertionError("kmwatch: no %s; stderr:\n%s" % (what, "".join(self.stderr[-40:])))

    def command(self, cmd, key):
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.wait_for(lambda m: key in m, key)[key]

    def dump(self):
        return {e["key"]: e["rv"] for e in self.command("dump", "dump")}

    def stats(self):
        return self.command("stats", "stats")

    def wait_state(self, want):
        """The stats once the watcher's state is want (on_synced fires when the list
        is in the store, just before the watch request starts), or the last stats
        after WAIT."""
        deadline = time.time() + WAIT
        st = self.stats()
        while st["state"] != want and time.time() < deadline:
            time.sleep(0.05)
            st = self.stats()
        return st

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                rc = self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("kmwatch did not stop on quit")
            assert rc == 0, "".join(self.stderr[-20:])


@pytest.fixture
def sim():
    with SimProcess() as s:
        status, body = s.request("POST", "/api/v1/namespaces",
                                 {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        assert status == 201, body
        yield s


@pytest.fixture
def kmwatch(sim, tools_dir):
    started = []

    def make(*extra):
        w = Kmwatch(tools_dir, sim.kubeconfig, PATH, *extra)
        started.append(w)
        return w

    yield make
    for w in started:
        w.close()


def create(sim, name, data="1"):
    status, body = sim.request("POST", PATH, {"apiVersion": "v1", "kind": "ConfigMap",
                                              "metadata": {"name": name}, "data": {"v": data}})
    assert status == 201, body


def update(sim, name, data):
    status, body = sim.request("PATCH", PATH + "/" + name, json.dumps({"data": {"v": data}}),
                               headers={"Content-Type": "application/merge-patch+json"})
    assert status == 200, body


def delete(sim, name):
    status, body = sim.request("DELETE", PATH + "/" + name)
    assert status == 200, body


def server_state(sim):
    status, body = sim.request("GET", PATH)
    assert status == 200, body
    return {"%s/%s" % (NS, o["metadata"]["name"]): o["metadata"]["resourceVersion"]
            for o in body["items"]}


def mine(state):
    """The test's own objects (the simulator may add others, e.g. kube-root-ca.crt)."""
    return {k for k in state if k.startswith(NS + "/c")}


def converge(sim, w):
    """Waits until the watcher's store equals the server's list; returns it."""
    deadline = time.time() + WAIT
    want = got = None
    while time.time() < deadline:
        want, got = server_state(sim), w.dump()
        if want == got:
            return got
        time.sleep(0.1)
    raise AssertionError("store %r != server %r\nstderr:\n%s" % (got, want, "".join(w.stderr[-40:])))


def assert_no_duplicate_work(w, final):
    """Every (key, rv) was delivered at most once, and the last delivery per key is the final
    state (deleted keys end with DELETED)."""
    seen = set()
    last = {}
    for typ, key, rv in w.events:
        if typ in ("ADDED", "MODIFIED"):
            assert (key, rv) not in seen, "delivered twice: %s %s %s" % (typ, key, rv)
            seen.add((key, rv))
        last[key] = (typ, rv)
    for key, (typ, rv) in last.items():
        if key in final:
            assert typ in ("ADDED", "MODIFIED") and rv == final[key], (key, typ, rv, final[key])
        else:
            assert typ == "DELETED", (key, typ)


def test_initial_list_is_paginated_and_synced(sim, kmwatch):
    for i in range(7):
        create(sim, "c%d" % i)
    w = kmwatch()
    msg = w.wait_for(lambda m: m.get("synced"), "sync")
    final = converge(sim, w)
    assert msg["store"] == len(final)
    assert len(mine(final)) == 7
    assert sorted(k for t, k, _ in w.events if t == "ADDED") == sorted(final)
    st = w.wait_state("watching")
    assert st["lists"] == 1 and st["relists"] == 0 and st["synced"] is True
    assert st["state"] == "watching"


def test_survives_cut_streams(sim, kmwatch):
    for i in range(3):
        create(sim, "c%d" % i)
    # every watch request from now on is cut after 2 events (read when a watch starts)
    code, _ = sim.sim("POST", "/_sim/watch/cut", {"afterEvents": 2})
    assert code == 200
    w = kmwatch()
    w.wait_for(lambda m: m.get("synced"), "sync")
    for i in range(3, 9):
        create(sim, "c%d" % i)
    update(sim, "c0", "2")
    update(sim, "c0", "3")
    delete(sim, "c1")
    update(sim, "c5", "x")
    final = converge(sim, w)
    sim.sim("POST", "/_sim/watch/cut", {"afterEvents": None})
    assert_no_duplicate_work(w, final)
    st = w.stats()
    assert st["restarts"] >= 3, st  # 10 events, at most 2 per stream
    assert st["relists"] == 0, st  # re-watched from the last resourceVersion every time
    assert w.events.count(("DELETED", NS + "/c1", server_rv_after_delete(w, "c1"))) == 1


def server_rv_after_delete(w, name):
    rvs = [rv for t, k, rv in w.events if t == "DELETED" and k == NS + "/" + name]
    assert len(rvs) == 1, rvs
    return rvs[0]


def test_forced_410_relists_and_reports_missed_deletes(sim, kmwatch):
    for i in range(5):
        create(sim, "c%d" % i)
    w = kmwatch()
    w.wait_for(lambda m: m.get("synced"), "sync")
    update(sim, "c0", "2")
    w.wait_for(lambda m: m.get("event") == "MODIFIED" and m.get("key") == NS + "/c0", "c0 update")
    # Disconnect the watcher and keep it away: the restart drops its stream, every new watch
    # request fails with 503 until the fault is cleared.
    sim.sim("POST", "/_sim/faults", {"rules": [{"verb": "watch", "resource": "configmaps",
                                                "code": 503}]})
    code, _ = sim.sim("POST", "/_sim/restart")
    assert code == 200
    deadline = time.time() + WAIT
    while w.stats()["errors"] < 1:  # it noticed and is backing off
        assert time.time() < deadline, "watcher never failed a watch"
        time.sleep(0.05)
    # While it is away: deletes, an update and a create it can only learn from a relist.
    delete(sim, "c1")
    delete(sim, "c2")
    update(sim, "c3", "2")
    create(sim, "c9")
    sim.sim("POST", "/_sim/watch/expire")  # the next watch gets an ERROR 410 event
    sim.sim("DELETE", "/_sim/faults")
    w.wait_for(lambda m: m.get("synced"), "relist")
    final = converge(sim, w)
    assert mine(final) == {NS + "/c0", NS + "/c3", NS + "/c4", NS + "/c9"}
    deleted = sorted(k for t, k, _ in w.events if t == "DELETED")
    assert deleted == [NS + "/c1", NS + "/c2"]  # missed deletes reported once each
    for name in ("c1", "c2"):  # ... by the relist's diff: the last known state, not a watch event
        added = [rv for t, k, rv in w.events if t == "ADDED" and k == NS + "/" + name]
        assert server_rv_after_delete(w, name) == added[0]
    assert_no_duplicate_work(w, final)
    st = w.stats()
    assert st["relists"] >= 1 and st["expired"] >= 1, st
    assert st["errors"] >= 1, st
    # Unchanged objects were not delivered again by the relist.
    assert [e for e in w.events if e[1] == NS + "/c4"] == [("ADDED", NS + "/c4", final[NS + "/c4"])]


def test_survives_simulator_restart(sim, kmwatch):
    for i in range(4):
        create(sim, "c%d" % i)
    w = kmwatch()
    w.wait_for(lambda m: m.get("synced"), "sync")
    update(sim, "c0", "2")
    w.wait_for(lambda m: m.get("event") == "MODIFIED", "update before restart")
    code, _ = sim.sim("POST", "/_sim/restart")
    assert code == 200
    delete(sim, "c1")
    create(sim, "c7")
    update(sim, "c2", "5")
    final = converge(sim, w)
    # and the watch is live again afterwards
    update(sim, "c3", "9")
    final = converge(sim, w)
    assert_no_duplicate_work(w, final)
    st = w.stats()
    assert st["restarts"] >= 1, st


def test_stop_is_prompt_while_watching(sim, kmwatch):
    w = kmwatch("--timeout-min", "300", "--timeout-max", "300")
    w.wait_for(lambda m: m.get("synced"), "sync")
    assert w.wait_state("watching")["state"] == "watching"
    w.close()  # returns only when the watcher thread stopped (the stream was cancelled)
