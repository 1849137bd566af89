"""Server faults while kubemend heals the seed, in both modes; each end state must equal the clean run's:
random 429 (Retry-After) / 500 / 503 / 504 / added latency at 10% on every verb and resource, one 503 on the
first write of each step, watch streams cut every few events, forced 410 on watches, continue tokens expiring
mid-list and on every page (lists capped at 2 items per page so that the seed's lists have pages), the API server
restarting mid-run.  No rerun: kubemend itself must ride the faults out."""

import pytest

import harness
from conftest import FULL, check
from harness import Chaos, faults

ONE_SHOT = [{"verb": "patch", "resource": "secrets"}, {"verb": "update", "resource": "configmaps"},
            {"verb": "update", "resource": "certificates.k8s.io/certificatesigningrequests/approval"},
            {"verb": "patch", "resource": "apps/daemonsets"}]
SCENARIOS = {
    "429": lambda seed: Chaos(faults(429, retry_after=1)),
    "500": lambda seed: Chaos(faults(500)),
    "503": lambda seed: Chaos(faults(503)),
    "504": lambda seed: Chaos(faults(504)),
    # one 503 on the first write of each step: deterministic
    "503-one-shot": lambda seed: Chaos([dict(r, code=503, count=1, rate=1.0) for r in ONE_SHOT]),
    "latency": lambda seed: Chaos(faults(latency_ms=250)),
    # each cut counts as a watch failure: the reconnect backoff (client-go's: 0.8 s doubling to 30 s, reset after
    # 2 min without one) makes the run minutes long, hence the longer timeout
    "watch-cut": lambda seed: Chaos(cut=5, timeout=480),
    "watch-410": lambda seed: Chaos(watch410=0.3),
    "continue-mid-list": lambda seed: Chaos(page_cap=2, cont="next"),
    "continue-every-page": lambda seed: Chaos(page_cap=2, cont="every"),
    "apiserver-restart": lambda seed: Chaos(restarts=[3 + 7 * seed, 20 + 5 * seed], down=1.0),
}
# Fails on main until issue 12 item 3 (transient errors retried; expiring continue tokens) lands: strict, so the
# fix flips them loudly.
_5XX = "issue 12 item 3: a 5xx answer to a token Secret write is not retried (tokens step ChangeFailed, run Failed)"
_CONT = "issue 12 item 3: continue tokens expiring on every page fail the run (CA bundle, CSRs, pods left undone)"
XFAIL = {(name, mode): why for name, why in (("500", _5XX), ("503", _5XX), ("504", _5XX), ("503-one-shot", _5XX),
                                             ("continue-every-page", _CONT)) for mode in ("once", "operator")}
# The seeded 10% draws follow the order of requests: deterministic for `run --once`, not for the operator (its
# watches and Events interleave differently each run), where a run sometimes draws no 5xx for a token write and
# passes (seen once for 503 in 2 runs): not strict there, or the matrix would flake before the fix.
NOT_DETERMINISTIC = {("500", "operator"), ("503", "operator"), ("504", "operator")}
QUICK = {("503-one-shot", "once")}
RUNS = 1


def params():
    out = []
    for name in SCENARIOS:
        for mode in ("once", "operator"):
            if not FULL and (name, mode) not in QUICK:
                continue
            for seed in range(1, RUNS + 1):
                strict = (name, mode) not in NOT_DETERMINISTIC
                marks = [pytest.mark.xfail(strict=strict, reason=XFAIL[name, mode])] if (name, mode) in XFAIL else []
                out.append(pytest.param(name, mode, seed, marks=marks, id="%s-%s-%d" % (name, mode, seed)))
    return out


@pytest.mark.parametrize("name,mode,seed", params())
def test_fault(clean, tmp_path, name, mode, seed):
    ref = clean(mode)[0]
    with harness.Cluster(mode, tmp_path, name, seed) as c:
        c.chaos(SCENARIOS[name](seed))
        c.drive()
        r = c.finish(ref)
        check(r, c)
