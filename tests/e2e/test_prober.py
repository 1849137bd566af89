"""The token prober (prober.py) on the real servers, per version: the tool that counts the 401s the workloads would
see must see none on a healthy cluster and must see them after the PKI-rebuild disaster (new sa.key) — otherwise a
zero in bridge.py's window proves nothing. The tests of this module run in order on one cluster: the seed
installed, the prober started; a healthy window; a kube-apiserver restart (bridge.py restarts it: failed reviews
are errors, not 401s); the disaster, after which exactly the pods that started before it see 401s.

The first tests need no server: which volume holds a pod's token and which pods are probed at all."""

import pytest
from realk8s import seed

from prober import LEGACY, PROJECTED, TokenProber, eligible, token_sources

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


def _pod(volumes=(), mounts=(), phase="Running", annotations=None, deleting=False, sa="worker"):
    meta = {"namespace": "ns", "name": "p", "uid": "u-1", "annotations": dict(annotations or {})}
    if deleting:
        meta["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase},
            "spec": {"serviceAccountName": sa, "volumes": list(volumes),
                     "containers": [{"name": "c", "volumeMounts": [{"name": n, "mountPath": p} for n, p in mounts]}]}}


LEGACY_VOL = {"name": "worker-token-abcde", "secret": {"secretName": "worker-token-abcde"}}
PROJECTED_VOL = {"name": "kube-api-access-x1y2z", "projected": {"sources": [
    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}


def test_token_sources_by_volume():
    # 1.19's ServiceAccount admission: the account's token Secret, mounted at the SA path
    assert token_sources(_pod([LEGACY_VOL], [(LEGACY_VOL["name"], SA_MOUNT)])) == [(LEGACY, "worker-token-abcde")]
    # 1.21+: the projected kube-api-access volume -> a TokenRequest for the pod's account
    assert token_sources(_pod([PROJECTED_VOL], [(PROJECTED_VOL["name"], SA_MOUNT)])) == [(PROJECTED, "worker")]
    assert token_sources(_pod([PROJECTED_VOL], sa=None)) == [(PROJECTED, "default")]
    # a token for another audience (e.g. a vault agent) is not the API client's
    other = {"name": "vault", "projected": {"sources": [{"serviceAccountToken": {"audience": "vault", "path": "t"}}]}}
    assert token_sources(_pod([other])) == []
    # automount off: no volume at all; an Opaque Secret volume is only a candidate until read
    assert token_sources(_pod()) == []
    cfg = {"name": "cfg", "secret": {"secretName": "app-config"}}
    # the volume mounted at the SA path comes first, whatever the volume order
    assert token_sources(_pod([cfg, LEGACY_VOL], [("cfg", "/etc/cfg"), (LEGACY_VOL["name"], SA_MOUNT + "/")])) == [
        (LEGACY, "worker-token-abcde"), (LEGACY, "app-config")]


def test_eligible_pods():
    assert eligible(_pod([LEGACY_VOL]))
    assert not eligible(_pod([LEGACY_VOL], phase="Pending"))  # no process before Running (even once bound)
    assert not eligible(_pod([LEGACY_VOL], phase="Succeeded"))
    assert not eligible(_pod([LEGACY_VOL], deleting=True))  # its process predates the prober: token unknown
    assert not eligible(_pod(annotations={"kubernetes.io/config.mirror": "abc"}))


# ---------------------------------------------------------------------------------------------- real servers

@pytest.fixture(scope="module")
def seeded(control_plane, kubelet):
    return seed.install(control_plane, kubelet)


@pytest.fixture(scope="module")
def prober(control_plane, seeded):
    p = TokenProber(control_plane).start()
    yield p
    p.stop()


def _token_pods(desc):
    """The seed's pods that mount a token (ServiceAccount admission gave them one): what the prober must hold."""
    return {k for k, v in desc["pods"].items() if v["automount"] and k not in desc["mirrorPods"]}


def _summary(res):
    return {k: res[k] for k in ("probes", "unauthorized", "pods", "rounds", "round_s_max", "errors", "captured",
                                "uncaptured")}


def test_healthy_cluster_no_401(control_plane, seeded, prober):
    """Every seed pod with a token mount is captured (legacy Secret tokens before 1.21, bound TokenRequest tokens
    after), none without one, and a healthy cluster answers every probe authenticated."""
    want = _token_pods(seeded)
    assert want
    seed.wait_for(lambda: set(prober.captured()) >= want, 30, "the prober to capture the seed pods' tokens",
                  detail=prober.result)
    held = prober.captured()
    assert set(held) == want, (sorted(set(held) - want), sorted(want - set(held)))
    assert set(held.values()) == {LEGACY if control_plane.minor < 21 else PROJECTED}
    prober.mark()
    res = prober.wait_rounds(3)
    print("prober %s healthy: %s" % (control_plane.version, _summary(res)))
    assert res["errors"] == 0, res["last_error"]
    assert res["pods"] == len(want) and res["probes"] >= 3 * len(want), res
    assert res["unauthorized"] == 0 and res["pods_401"] == [] and res["first_401"] is None, res
    assert res["uncaptured"] == 0, res


def test_apiserver_restart_is_not_a_401(control_plane, prober):
    """bridge.py restarts kube-apiserver inside its window: the reviews that fail meanwhile (connection refused,
    not ready) are counted as errors, never as 401s, and the prober goes on probing afterwards."""
    prober.mark()
    control_plane.restart_apiserver()
    control_plane.restart_controller_manager()  # as bridge.py does: it may lose its Lease meanwhile
    after = prober.result()["rounds"]
    res = prober.wait_rounds(after + 3)
    print("prober %s across an apiserver restart: %s (last error: %s)" % (
        control_plane.version, _summary(res), res["last_error"]))
    assert res["errors"] >= 1, res  # the restart takes seconds (SIGTERM, /readyz): some rounds failed
    assert res["unauthorized"] == 0 and res["pods_401"] == [], res
    assert res["probes"] >= 3 * res["captured"] > 0, res


def test_disaster_old_tokens_are_401(control_plane, kubelet, seeded, prober):
    """After seed.disaster (new sa.key) every pod that started before it holds a token signed with the lost key:
    the prober reports each of them in pods_401 (a probe per round each), and none of the pods started after it
    (the `after` StatefulSet: its token is signed with the new key)."""
    before = set(prober.captured())
    seed.disaster(control_plane, kubelet, seeded)
    seed.wait_for(lambda: "monitoring/alertmanager-0" in prober.captured(), 30,
                  "the prober to capture the pod started after the disaster", detail=prober.result)
    now = prober.captured()
    prober.mark()
    res = prober.wait_rounds(3)
    print("prober %s after the disaster: %s; pods with 401s: %d of %d; first: %s" % (
        control_plane.version, _summary(res), len(res["pods_401"]), len(now), res["first_401"]))
    assert res["errors"] == 0, res["last_error"]
    old = before & set(now)
    assert old and set(res["pods_401"]) == old, (sorted(old ^ set(res["pods_401"])))
    assert "monitoring/alertmanager-0" not in res["pods_401"]
    assert res["unauthorized"] == res["rounds"] * len(old) and res["probes"] == res["rounds"] * len(now), res
    assert res["first_401"]["pod"] in old and res["first_401"]["error"], res["first_401"]
