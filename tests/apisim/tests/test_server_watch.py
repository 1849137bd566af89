"""Watch framing, bookmarks, history / 410, selector transitions, test controls for watches."""

import http.client
import json
import threading
import time

from conftest import fixture


def open_watch(sim, path):
    conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=sim.ssl_context(), timeout=30)
    conn.request("GET", path, headers={"Accept": "application/json", "User-Agent": "watch-test/1.0"})
    resp = conn.getresponse()
    return conn, resp


def read_events(resp, n=None, timeout=15):
    """Read newline-delimited events until the stream ends or n events arrived."""
    out = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = resp.readline()
        if not line:
            break
        out.append(json.loads(line))
        if n is not None and len(out) >= n:
            break
    return out


def setup_module(module):
    pass


def ensure_ns(sim, ns):
    sim.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})


def test_watch_from_rv_framing_matches_fixture(sim):
    ensure_ns(sim, "w1")
    _, lst = sim.request("GET", "/api/v1/namespaces/w1/secrets")
    rv = lst["metadata"]["resourceVersion"]
    conn, resp = open_watch(sim, "/api/v1/namespaces/w1/secrets?watch=1&resourceVersion=%s&timeoutSeconds=4" % rv)
    assert resp.status == 200
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.getheader("Content-Type") == "application/json"

    def writer():
        time.sleep(0.3)
        sim.request("POST", "/api/v1/namespaces/w1/secrets", {"metadata": {"name": "fx-watched"},
                                                                 "stringData": {"a": "b"}})
        sim.request("PATCH", "/api/v1/namespaces/w1/secrets/fx-watched", json.dumps({"data": {"b": "Yw=="}}),
                    {"Content-Type": "application/merge-patch+json"})
        sim.request("DELETE", "/api/v1/namespaces/w1/secrets/fx-watched")
    t = threading.Thread(target=writer)
    t.start()
    evs = read_events(resp)
    t.join()
    conn.close()
    want = [e for e in fixture("watch-secrets-fixtures-bookmarks.ndjson") if e["type"] != "BOOKMARK"]
    assert [e["type"] for e in evs] == [e["type"] for e in want]
    for ours, theirs in zip(evs, want):
        assert set(ours) == {"type", "object"}
        assert ours["object"]["kind"] == "Secret" and ours["object"]["apiVersion"] == "v1"
        assert set(ours["object"]["metadata"]) - {"managedFields"} <= set(theirs["object"]["metadata"]) | {"labels"}
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in evs]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3


def test_watch_without_rv_sends_synthetic_added(sim):
    ensure_ns(sim, "w2")
    for n in ("a", "b"):
        sim.request("POST", "/api/v1/namespaces/w2/configmaps", {"metadata": {"name": n}})
    conn, resp = open_watch(sim, "/api/v1/namespaces/w2/configmaps?watch=true&timeoutSeconds=1")
    evs = read_events(resp)
    conn.close()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in evs] == [("ADDED", "a"), ("ADDED", "b")]


def test_bookmarks_periodic_and_shape(sim):
    ensure_ns(sim, "w3")
    conn, resp = open_watch(sim, "/api/v1/namespaces/w3/secrets?watch=1&resourceVersion=%d&allowWatchBookmarks=true"
                                 "&timeoutSeconds=3" % int(sim.request("GET", "/api/v1/namespaces/w3/secrets")[1][
                                     "metadata"]["resourceVersion"]))
    evs = read_events(resp)
    conn.close()
    bms = [e for e in evs if e["type"] == "BOOKMARK"]
    assert bms, evs
    want = fixture("watch-secrets-fixtures-bookmarks.ndjson")[-1]
    assert set(bms[0]["object"]) == set(want["object"])
    assert set(bms[0]["object"]["metadata"]) == {"resourceVersion", "creationTimestamp"}
    assert bms[0]["object"]["metadata"]["creationTimestamp"] is None


def test_too_old_rv_gets_410_error_event(sim):
    conn, resp = open_watch(sim, "/api/v1/namespaces/w1/secrets?watch=1&resourceVersion=1&timeoutSeconds=10")
    assert resp.status == 200
    evs = read_events(resp)
    conn.close()
    want = fixture("watch-secrets-rv1-after-compaction.ndjson")
    assert len(evs) == 1 and evs[0]["type"] == "ERROR"
    assert set(evs[0]["object"]) == set(want[0]["object"])
    assert evs[0]["object"]["code"] == 410 and evs[0]["object"]["reason"] == "Expired"
    assert evs[0]["object"]["message"].startswith("too old resource version: 1 (")


def test_label_selector_transitions(sim):
    ensure_ns(sim, "w4")
    sim.request("POST", "/api/v1/namespaces/w4/configmaps", {"metadata": {"name": "c", "labels": {"app": "x"}}})
    _, lst = sim.request("GET", "/api/v1/namespaces/w4/configmaps")
    rv = lst["metadata"]["resourceVersion"]
    conn, resp = open_watch(sim, "/api/v1/namespaces/w4/configmaps?watch=1&labelSelector=app%%3Dx&resourceVersion=%s"
                                 "&timeoutSeconds=3" % rv)

    def writer():
        time.sleep(0.3)
        mp = {"Content-Type": "application/merge-patch+json"}
        sim.request("PATCH", "/api/v1/namespaces/w4/configmaps/c", json.dumps({"metadata": {"labels": {"app": "y"}}}),
                    mp)
        sim.request("PATCH", "/api/v1/namespaces/w4/configmaps/c", json.dumps({"data": {"k": "v"}}), mp)
        sim.request("PATCH", "/api/v1/namespaces/w4/configmaps/c", json.dumps({"metadata": {"labels": {"app": "x"}}}),
                    mp)
    t = threading.Thread(target=writer)
    t.start()
    evs = read_events(resp)
    t.join()
    conn.close()
    assert [e["type"] for e in evs] == ["DELETED", "ADDED"]


def test_watch_does_not_block_other_requests(sim):
    conn, resp = open_watch(sim, "/api/v1/configmaps?watch=1&timeoutSeconds=5")
    t0 = time.time()
    assert sim.request("GET", "/api/v1/namespaces")[0] == 200
    conn.close()
    assert time.time() - t0 < 5


def test_expire_control_and_cut(sim):
    ensure_ns(sim, "w5")
    sim.sim("POST", "/_sim/watch/expire")
    conn, resp = open_watch(sim, "/api/v1/namespaces/w5/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=5" %
                            sim.request("GET", "/api/v1/namespaces/w5/configmaps")[1]["metadata"]["resourceVersion"])
    evs = read_events(resp)
    conn.close()
    assert len(evs) == 1 and evs[0]["object"]["code"] == 410
    for i in range(3):
        sim.request("POST", "/api/v1/namespaces/w5/configmaps", {"metadata": {"name": "c%d" % i}})
    assert sim.sim("POST", "/_sim/watch/cut", {"afterEvents": 2})[0] == 200
    conn, resp = open_watch(sim, "/api/v1/namespaces/w5/configmaps?watch=1&timeoutSeconds=5")
    t0 = time.time()
    try:
        evs = read_events(resp)
    except (http.client.IncompleteRead, ConnectionError, OSError):
        evs = None
    conn.close()
    sim.sim("POST", "/_sim/watch/cut", {"afterEvents": None})
    assert evs is None or len(evs) == 2
    assert time.time() - t0 < 4


def test_restart_drops_watches_and_forgets_history(sim):
    ensure_ns(sim, "w6")
    _, lst = sim.request("GET", "/api/v1/namespaces/w6/configmaps")
    rv = lst["metadata"]["resourceVersion"]
    sim.request("POST", "/api/v1/namespaces/w6/configmaps", {"metadata": {"name": "before"}})
    conn, resp = open_watch(sim, "/api/v1/namespaces/w6/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=20" % rv)
    first = read_events(resp, n=1)
    assert first[0]["object"]["metadata"]["name"] == "before"
    t0 = time.time()
    assert sim.sim("POST", "/_sim/restart")[0] == 200
    try:
        rest = read_events(resp)
    except (http.client.IncompleteRead, ConnectionError, OSError):
        rest = []
    conn.close()
    assert rest == [] and time.time() - t0 < 10
    time.sleep(0.2)
    conn, resp = open_watch(sim, "/api/v1/namespaces/w6/configmaps?watch=1&resourceVersion=%s&timeoutSeconds=3" % rv)
    evs = read_events(resp)
    conn.close()
    assert evs and evs[0]["type"] == "ERROR" and evs[0]["object"]["code"] == 410
    assert sim.request("GET", "/api/v1/namespaces/w6/configmaps/before")[0] == 200
