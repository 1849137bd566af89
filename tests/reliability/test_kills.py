"""SIGKILL of kubemend at seeded points of the run, each followed by the restart a user would do (`run --once`
again until it exits 0; a new operator process) until done; and chains of kills (each kill hits the process that
the previous restart started).  A point is a write ordinal of kubemend's user (Events and Leases not counted,
at most the clean run's number of writes): the simulator commits that write and withholds its answer; kubemend is
killed at once, or the answer is released and the kill follows 0-1.5 s later.  Every end state must equal the
clean run's: nothing lost, no workload restarted twice, one backup.

The operator runs without --leader-elect here (a restarted single replica would wait 15 s for its own dead
lease); test_leader.py kills leaders."""

import pytest

import harness
from conftest import FULL, check

POINTS = 20 if FULL else 2          # single kills per mode
CHAINS = 2 if FULL else 0           # chains of CHAIN_LEN kills per mode
CHAIN_LEN = 4
QUICK_OPERATOR = 1                  # operator single kills in the subset


def params():
    out = []
    for mode in ("once", "operator"):
        n = POINTS if FULL or mode == "once" else QUICK_OPERATOR
        for seed in range(1, n + 1):
            out.append(pytest.param(mode, seed, 1, id="kill-%s-%d" % (mode, seed)))
        for seed in range(1, CHAINS + 1):
            out.append(pytest.param(mode, 100 + seed, CHAIN_LEN, id="chain-%s-%d" % (mode, seed)))
    return out


@pytest.mark.parametrize("mode,seed,chain", params())
def test_sigkill(clean, tmp_path, mode, seed, chain):
    ref, writes, _ = clean(mode)
    kills = harness.seeded_kills(seed, writes, 1, chain)[0]
    name = "sigkill" if chain == 1 else "sigkill-chain-%d" % chain
    with harness.Cluster(mode, tmp_path, name, seed) as c:
        c.drive(kills)
        r = c.finish(ref)
        if c.kills == 0:
            pytest.fail("no kill happened (%s): %s" % (kills, c.notes))
        check(r, c)
