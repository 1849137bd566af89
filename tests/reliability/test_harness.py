"""The comparison can fail: the untouched seed differs from the clean end state in every step's keys, and a
second rollout of a workload and a deleted ownerless pod (done by hand after the clean run) are counted as one
double restart and one loss."""

import state


def test_untouched_seed_is_not_the_clean_end_state(clean, proof):
    ref = clean("once")[0]
    keys = {k.split(":")[0] for k, _, _ in state.diff(ref, proof["nothing-done"])}
    assert {"token", "extauth", "backup", "csr", "rollouts", "pods", "evictions"} <= keys, keys


def test_double_restart_and_lost_pod_are_counted(clean, proof):
    ref = clean("once")[0]
    d = {k: (c, e) for k, c, e in state.diff(ref, proof["sabotaged"])}
    assert d.get("rollouts:Deployment/shop/frontend") == (1, 2), d
    assert d.get("ownerless:ci/ci-runner-manual") == ("kept", "deleted"), d
    assert state.classify(ref, proof["sabotaged"]) == (1, 1), d
