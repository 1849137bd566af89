"""/_sim controls: faults, counters, dump, nodes; process exit; big-store pagination (in-process)."""

import os
import signal
import sys
import time

from apisim.testing import SimProcess


def test_fault_429_with_retry_after_then_cleared(sim):
    rules = {"rules": [{"verb": "list", "resource": "configmaps", "code": 429, "retryAfter": 3, "count": 2}]}
    assert sim.sim("POST", "/_sim/faults", rules)[0] == 200
    st, err = sim.request("GET", "/api/v1/namespaces/default/configmaps")
    assert st == 429 and sim.last_headers.get("Retry-After") == "3"
    assert err["kind"] == "Status" and err["reason"] == "TooManyRequests" and err["details"]["retryAfterSeconds"] == 3
    assert sim.request("GET", "/api/v1/namespaces/default/configmaps")[0] == 429
    assert sim.request("GET", "/api/v1/namespaces/default/configmaps")[0] == 200  # count exhausted
    assert sim.request("GET", "/api/v1/namespaces/default/secrets")[0] == 200     # other resource untouched
    sim.sim("POST", "/_sim/faults", {"rules": [{"verb": "get", "resource": "namespaces", "code": 503}]})
    st, err = sim.request("GET", "/api/v1/namespaces/default")
    assert st == 503 and err["reason"] == "ServiceUnavailable"
    sim.sim("POST", "/_sim/faults", {"rules": [{"resource": "namespaces", "code": 500}]})
    st, err = sim.request("GET", "/api/v1/namespaces/default")
    assert st == 500 and err["reason"] == "InternalError"
    assert sim.sim("DELETE", "/_sim/faults")[0] == 200
    assert sim.request("GET", "/api/v1/namespaces/default")[0] == 200


def test_counters_by_verb_resource_code(sim):
    sim.sim("POST", "/_sim/counters/reset")
    sim.request("GET", "/api/v1/namespaces/default/secrets/none")
    sim.request("GET", "/api/v1/namespaces/default/secrets")
    st, c = sim.sim("GET", "/_sim/counters")
    got = {(r["verb"], r["resource"], r["code"]): r["count"] for r in c["requests"]}
    assert got[("get", "secrets", 404)] == 1 and got[("list", "secrets", 200)] == 1


def test_sim_controls_need_admin(sim):
    st, err = sim.request("GET", "/_sim/counters", cert=False)
    assert st == 403 and err["reason"] == "Forbidden"


def test_controller_options_at_runtime(sim):
    """Only tokenDelay/tokenRate, and only with controllers (this sim has none; the tokens
    integration tests set tokenRate on a sim with controllers)."""
    st, err = sim.sim("POST", "/_sim/controllers", {"kubeletDelay": 1})
    assert st == 400 and "tokenRate" in err["message"]
    st, err = sim.sim("POST", "/_sim/controllers", {"tokenRate": 4})
    assert st == 400


def test_dump_and_nodes_flag(sim):
    st, d = sim.sim("GET", "/_sim/dump")
    assert st == 200 and "namespaces" in d["objects"]
    assert any(o["metadata"]["name"] == "kube-system" for o in d["objects"]["namespaces"])
    st, r = sim.sim("POST", "/_sim/nodes/worker-9/down")
    assert st == 200 and "worker-9" in r["downNodes"]
    st, r = sim.sim("POST", "/_sim/nodes/worker-9/up")
    assert "worker-9" not in r["downNodes"]


def test_sigterm_exits_zero():
    p = SimProcess(extra_args=["--no-controllers"]).start()
    try:
        p.proc.send_signal(signal.SIGTERM)
        assert p.proc.wait(timeout=15) == 0
    finally:
        p.stop()


def test_store_pagination_large(tmp_path):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from apisim.store import Store
    s = Store(history_size=100)
    n = 30000
    for i in range(n):
        s.create("pods", {"metadata": {"name": "p%05d" % i, "namespace": "ns%02d" % (i % 50)},
                          "spec": {"containers": [{"name": "c", "image": "x"}]}})
    seen, start, pages = [], None, 0
    while True:
        refs, nxt, remaining, _rv = s.list_page("pods", None, start, 500)
        pages += 1
        seen.extend(o["metadata"]["namespace"] + "/" + o["metadata"]["name"] for o in refs)
        if nxt is None:
            break
        assert remaining == n - len(seen)
        start = nxt
    assert len(seen) == n and seen == sorted(seen) and len(set(seen)) == n and pages == n // 500
    refs, _, _, _ = s.list_page("pods", "ns07", None, 0)
    assert len(refs) == n // 50 and all(o["metadata"]["namespace"] == "ns07" for o in refs)
    s.stop()
