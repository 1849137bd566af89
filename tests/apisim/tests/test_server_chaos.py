"""/_sim controls for the reliability suite: the write log and its trap, forced 410 on watches and continue
tokens, the page cap, a restart with downtime."""

import json
import socket
import threading
import time

import pytest

from apisim.testing import SimProcess

CM = "/api/v1/namespaces/default/configmaps"


@pytest.fixture(scope="module")
def bare():
    with SimProcess(extra_args=["--no-controllers"]) as s:
        yield s


def cm(name):
    return {"metadata": {"name": name}, "data": {"k": "v"}}


def test_write_log_records_successful_writes_only(bare):
    sim = bare
    sim.sim("DELETE", "/_sim/writes")
    assert sim.request("POST", CM, cm("wl-a"))[0] == 201
    assert sim.request("POST", CM, cm("wl-a"))[0] == 409               # not a write: refused
    assert sim.request("GET", CM + "/wl-a")[0] == 200                   # not a write
    assert sim.request("PATCH", CM + "/wl-a", {"data": {"k": "w"}},
                       headers={"Content-Type": "application/merge-patch+json"})[0] == 200
    assert sim.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                       {"spec": {"token": "x"}})[0] == 201              # a review, not a write
    assert sim.request("DELETE", CM + "/wl-a")[0] == 200
    _, body = sim.sim("GET", "/_sim/writes")
    got = [(w["verb"], w["resource"], w["namespace"], w["name"], w["user"]) for w in body["writes"]]
    assert got == [("create", "configmaps", "default", "wl-a", "kubernetes-admin"),
                   ("patch", "configmaps", "default", "wl-a", "kubernetes-admin"),
                   ("delete", "configmaps", "default", "wl-a", "kubernetes-admin")], got
    seqs = [w["seq"] for w in body["writes"]]
    assert seqs == sorted(seqs)
    _, later = sim.sim("GET", "/_sim/writes?since=%d" % seqs[1])
    assert [w["verb"] for w in later["writes"]] == ["delete"]


def test_trap_withholds_the_answer_of_the_nth_write_after_committing_it(bare):
    sim = bare
    sim.sim("POST", "/_sim/writes/trap", {"after": 2, "exclude": ["events"]})
    assert sim.request("POST", CM, cm("trap-1"))[0] == 201
    result = {}

    def second():
        try:
            result["r"] = sim.request("POST", CM, cm("trap-2"), timeout=60)
        except OSError as e:
            result["r"] = e
    t = threading.Thread(target=second)
    t.start()
    deadline = time.time() + 10
    while not sim.sim("GET", "/_sim/writes/trap")[1]["fired"] and time.time() < deadline:
        time.sleep(0.05)
    st = sim.sim("GET", "/_sim/writes/trap")[1]
    assert st["fired"] and st["entry"]["name"] == "trap-2", st
    time.sleep(0.3)
    assert "r" not in result, "the answer was withheld"
    assert sim.request("GET", CM + "/trap-2")[0] == 200, "committed before the answer"
    sim.sim("DELETE", "/_sim/writes/trap")
    t.join(10)
    assert result["r"][0] == 201


def test_forced_410_on_watches_by_rate(bare):
    sim = bare
    sim.sim("POST", "/_sim/watch/expire", {"rate": 1.0})
    try:
        st, text = sim.request("GET", CM + "?watch=1&timeoutSeconds=2", raw=True)
        ev = json.loads(text.splitlines()[0])
        assert st == 200 and ev["type"] == "ERROR" and ev["object"]["code"] == 410, text
        st, text = sim.request("GET", CM + "?watch=1&timeoutSeconds=2", raw=True)
        assert json.loads(text.splitlines()[0])["type"] == "ERROR", "every watch, not only the next"
    finally:
        sim.sim("POST", "/_sim/watch/expire", {"rate": 0})
    st, text = sim.request("GET", CM + "?watch=1&timeoutSeconds=1", raw=True)
    assert "ERROR" not in text


def test_page_cap_and_continue_tokens_expiring_next_and_every(bare):
    sim = bare
    for i in range(5):
        sim.request("POST", CM, cm("page-%d" % i))
    sim.sim("POST", "/_sim/list/page-cap", {"max": 2})
    try:
        _, first = sim.request("GET", CM + "?limit=500")
        assert len(first["items"]) == 2 and first["metadata"]["continue"]
        _, whole = sim.request("GET", CM)
        assert len(whole["items"]) >= 5, "an unpaged list is not capped"

        sim.sim("POST", "/_sim/continue/expire", {"mode": "next"})
        st, gone = sim.request("GET", CM + "?limit=500&continue=" + first["metadata"]["continue"])
        assert st == 410 and gone["reason"] == "Expired" and gone["metadata"]["continue"], gone
        st, page = sim.request("GET", CM + "?limit=500&continue=" + first["metadata"]["continue"])
        assert st == 200 and len(page["items"]) == 2, "only the next one"

        sim.sim("POST", "/_sim/continue/expire", {"mode": "every"})
        for _ in range(2):
            st, gone = sim.request("GET", CM + "?limit=500&continue=" + first["metadata"]["continue"])
            assert st == 410
        # the inconsistent (rv -1) token of the 410 answer continues, as on the real server
        st, page = sim.request("GET", CM + "?limit=500&continue=" + gone["metadata"]["continue"])
        assert st == 200 and page["items"], page
    finally:
        sim.sim("POST", "/_sim/continue/expire", {"mode": "off"})
        sim.sim("POST", "/_sim/list/page-cap", {"max": 0})


def test_restart_with_downtime_refuses_then_serves():
    with SimProcess(extra_args=["--no-controllers"]) as sim:
        sim.sim("POST", "/_sim/restart", {"downSeconds": 1.5})
        time.sleep(0.3)
        with pytest.raises((OSError, ConnectionError)):
            sim.request("GET", "/api/v1/namespaces", timeout=5)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                if sim.request("GET", "/api/v1/namespaces", timeout=5)[0] == 200:
                    break
            except (OSError, ConnectionError, socket.error):
                time.sleep(0.2)
        assert sim.request("GET", "/api/v1/namespaces")[0] == 200
