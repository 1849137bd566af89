"""The fault-matrix suite's shared parts: the clean reference runs (one per mode, once per session), the matrix
size (KM_RELIABILITY=full: `make reliability`; otherwise the small subset of `make test`) and the table printed at
the end (scenario x mode: runs, exact, lost, double restarts), also written to reliability-out/results.{md,json}."""

import json
import os
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402

FULL = os.environ.get("KM_RELIABILITY") == "full"
OUT = os.environ.get("KM_RELIABILITY_OUT") or os.path.join(harness.ROOT, "reliability-out")

# The subset does not even collect what only the full matrix runs (leaders: 15 s per failover; the real server).
collect_ignore = [] if FULL else ["test_leader.py", "test_realk8s_restart.py"]
_CLEAN = {}


def pytest_report_header(config):
    return "reliability: %s" % ("full matrix" if FULL else
                                "the make-test subset (KM_RELIABILITY=full or `make reliability` for the matrix)")
_PROOF = {}


def sabotage(c):
    """After the clean run: a second rollout restart of shop/frontend and the ownerless pod ci/ci-runner-manual
    deleted, as a faulty kubemend would; the canonical end state then (test_harness.py: the comparison sees it)."""
    c.sim.kubectl("rollout", "restart", "-n", "shop", "deployment/frontend")
    c.sim.kubectl("delete", "pod", "-n", "ci", "ci-runner-manual", "--wait=false")
    return c.finish()


@pytest.fixture(scope="session")
def proof(clean):
    """{"nothing-done": the canonical state of the seed untouched, "sabotaged": see sabotage()}."""
    clean("once")
    return _PROOF


@pytest.fixture(scope="session")
def clean(tmp_path_factory):
    """clean(mode) -> (canonical end state, number of kubemend's writes (Events, Leases, the ClusterRecovery
    excluded), those writes counted by object) of a run without faults, computed once per mode and session."""
    def get(mode):
        if mode not in _CLEAN:
            with harness.Cluster(mode, tmp_path_factory.mktemp("clean-" + mode), "clean") as c:
                c.drive()
                end = c.finish()
                per_object = harness.per_object(c.product_writes({c.user()}))
                writes = sum(per_object.values())
                bad = [k for k, v in end.items() if k == "status" and v != "ok"]
                assert not bad and writes > 10, (end.get("status"), writes, c.notes, c.last_log()[-3000:])
                harness.RESULTS.append(harness.Result("clean", mode, 0, [], 0, 0, time.time() - c.t0, 0, c.runs,
                                                      "%d writes" % writes).row())
                if mode == "once":
                    _PROOF["nothing-done"] = harness.state.canonical(c.sim, c.before, c.before, [], {c.user()})
                    _PROOF["sabotaged"] = sabotage(c)
            _CLEAN[mode] = (end, writes, per_object)
        return _CLEAN[mode]
    return get


def check(result, cluster):
    """The assertion every scenario ends with: the end state equals the clean run's."""
    assert result.exact, result.explain() + "\n--- last kubemend log ---\n" + cluster.last_log()[-4000:]


def table(rows):
    agg = {}
    for r in rows:
        a = agg.setdefault((r["scenario"], r["mode"]), {"runs": 0, "exact": 0, "lost": 0, "double": 0, "kills": 0,
                                                         "failed": 0, "seconds": 0.0})
        a["runs"] += 1
        a["exact"] += r["exact"]
        a["lost"] += r["lost"]
        a["double"] += r["double"]
        a["kills"] += r["kills"]
        a["failed"] += not r["exact"]
        a["seconds"] += r["seconds"]
    lines = ["| scenario | mode | runs | exact | lost | double restarts | not exact | SIGKILLs | time (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (s, m), a in agg.items():
        lines.append("| %s | %s | %d | %d | %d | %d | %d | %d | %.0f |" % (
            s, m, a["runs"], a["exact"], a["lost"], a["double"], a["failed"], a["kills"], a["seconds"]))
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter):
    rows = harness.RESULTS
    if not rows:
        return
    text = table(rows)
    terminalreporter.write_sep("=", "reliability matrix (%s)" % ("full" if FULL else "subset"))
    terminalreporter.write_line(text)
    failed = [r for r in rows if not r["exact"]]
    for r in failed:
        terminalreporter.write_line("%s/%s seed %s: %s%s" % (r["scenario"], r["mode"], r["seed"], r["diffs"][:5],
                                                          " (" + r["notes"] + ")" if r["notes"] else ""))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    with open(os.path.join(OUT, "results.md"), "w") as f:
        f.write(text + "\n")
