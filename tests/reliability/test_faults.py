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
QUICK = {("503-one-shot", "once")}
RUNS = 1


def params():
    out = []
    for name in SCENARIOS:
        for mode in ("once", "operator"):
            if not FULL and (name, mode) not in QUICK:
                continue
            for seed in range(1, RUNS + 1):
                out.append(pytest.param(name, mode, seed, id="%s-%s-%d" % (name, mode, seed)))
    return out


@pytest.mark.parametrize("name,mode,seed", params())
def test_fault(clean, tmp_path, name, mode, seed):
    ref = clean(mode)[0]
    with harness.Cluster(mode, tmp_path, name, seed) as c:
        c.chaos(SCENARIOS[name](seed))
        c.drive()
        r = c.finish(ref)
        check(r, c)
