"""Two operator replicas with leader election (deploy/'s --leader-elect), SIGKILL of the leader at seeded write
points, a replacement replica started after each kill: never two leaders acting at once, judged from the server's
write log (every write of a replica, Leases aside, happens while that replica is the Lease's latest holder; each
replica runs as its own ServiceAccount bound to deploy/'s roles), no object written more often than in the clean
run, and the end state equal to the clean run's.  Each kill costs the Lease duration (15 s) before the standby
takes over: full matrix only."""

import pytest

import harness
from conftest import check

RUNS = 2
KILLS = 3


@pytest.mark.parametrize("seed", range(1, RUNS + 1))
def test_leader_sigkill(clean, tmp_path, seed):
    ref, writes, clean_per_object = clean("operator")
    kills = harness.seeded_kills(200 + seed, writes, 1, KILLS)[0]
    with harness.Cluster("operator", tmp_path, "leader-sigkill", seed, replicas=2 + KILLS) as c:
        c.lead(kills)
        r = c.finish(ref)
        overlap = c.two_leaders()
        users = {c.user(i) for i in range(c.replicas)}
        per = harness.per_object(c.product_writes(users))
        extra = {k: (n, clean_per_object.get(k, 0)) for k, n in per.items() if n > clean_per_object.get(k, 0)}
        assert c.kills >= 1, c.notes
        assert not overlap, overlap[:10]
        assert not extra, "objects written more often than in the clean run: %s" % extra
        check(r, c)
