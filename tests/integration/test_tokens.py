"""The tokens step against apisim: a mixed cluster after a PKI rebuild (stale, fresh, user-created,
being-deleted, unannotated, malformed token Secrets), Regenerate vs Delete, dry run, idempotence,
JWKS forbidden -> TokenReview fallback, conflict retry.

The step runs through build/tools/kmstep (the step without the ClusterRecovery orchestration;
same output format as kmstep)."""

import base64
import datetime
import json
import os
import re
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stepsim import SimProcess, StepRun, tools_dir  # noqa: E402

SELECTOR = "/api/v1/secrets?fieldSelector=type%3Dkubernetes.io%2Fservice-account-token"

# The seed scenario (tests/apisim/apisim/scenarios/seed.yaml): token Secrets created before the
# rebuild are signed by the old key, whether auto-generated or user-created.
STALE_AUTO = {"billing/invoicer", "billing/reporter", "ci/ci-runner", "kube-system/calico-node",
              "kube-system/coredns", "kube-system/kube-proxy", "monitoring/prometheus",
              "shop/cart-db", "shop/frontend"}  # ns/serviceaccount of <sa>-token-xxxxx Secrets
STALE_USER = {"ci/ci-deployer-token", "web/blog-publisher"}
FRESH = {"web/blog-api-token"}  # + monitoring/alertmanager-token-xxxxx
DELETING = "billing/invoicer-token-old"
UNANNOTATED = "shop/frontend-manual-token"
MALFORMED = "ci/ci-runner-broken-token"


def run_step(sim, spec=None, dry_run=False, status_file=None, extra=()):
    args = [os.path.join(tools_dir(), "kmstep"), "--kubeconfig", sim.kubeconfig, "--step",
            "tokens", "--spec", json.dumps(spec or {"verifyTimeoutSeconds": 20})]
    if dry_run:
        args.append("--dry-run")
    if status_file:
        args += ["--status-file", status_file]
    args += list(extra)
    p = subprocess.run(args, capture_output=True, text=True, timeout=180)
    r = StepRun(p.returncode, p.stdout, p.stderr)
    assert p.returncode == 0, r
    return r


def secrets(sim):
    st, body = sim.request("GET", SELECTOR)
    assert st == 200
    return {"%s/%s" % (s["metadata"]["namespace"], s["metadata"]["name"]): s for s in body["items"]}


def pass_order(keys):
    """The order the tokens step handles "ns/name" keys in: kube-system's first, then the rest, each sorted."""
    first = sorted(k for k in keys if k.startswith("kube-system/"))
    return first + sorted(k for k in keys if not k.startswith("kube-system/"))


def token_of(secret):
    t = (secret.get("data") or {}).get("token")
    return base64.b64decode(t).decode() if t else None


def review(sim, token):
    st, body = sim.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                           {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                            "spec": {"token": token}})
    assert st == 201
    return body.get("status") or {}


def stale_keys(before):
    out = set(STALE_USER)
    for k, s in before.items():
        sa = s["metadata"].get("annotations", {}).get("kubernetes.io/service-account.name")
        if "%s/%s" % (k.split("/")[0], sa) in STALE_AUTO and k != DELETING and \
                k.split("/")[1].startswith(sa + "-token-"):
            out.add(k)
    return out


def counters(sim):
    st, body = sim.sim("GET", "/_sim/counters")
    assert st == 200
    return body


def writes_to_secrets(sim):
    """Number of mutating requests on secrets recorded by the sim (any shape of counter key)."""
    text = json.dumps(counters(sim))
    data = json.loads(text)
    total = 0

    def walk(o, path):
        nonlocal total
        if isinstance(o, dict):
            for k, v in o.items():
                walk(v, path + [str(k)])
        elif isinstance(o, (int, float)):
            joined = " ".join(path)
            if "secrets" in joined and any(v in joined for v in ("patch", "delete", "update",
                                                                 "create")):
                total += o
    walk(data, [])
    return total


@pytest.fixture
def seed():
    with SimProcess(scenario="seed") as sim:
        yield sim


def test_dry_run_changes_nothing_then_regenerate_mixed_cluster(seed):
    before = secrets(seed)
    stale = stale_keys(before)
    assert len(stale) == 11

    dry = run_step(seed, dry_run=True)
    assert dry.condition["status"] == "True" and dry.condition["reason"] == "DryRun"
    assert set(dry.status["changed"]) == stale
    assert dry.status["regenerated"] == 0 and dry.status["stale"] == 11
    after_dry = secrets(seed)
    assert {k: s["metadata"]["resourceVersion"] for k, s in after_dry.items()} == \
        {k: s["metadata"]["resourceVersion"] for k, s in before.items()}

    r = run_step(seed)
    st = r.status
    assert st["method"] == "JWKS"
    assert st["scanned"] == len(before) == 16
    assert st["stale"] == 11 and st["regenerated"] == 11 and st["deleted"] == 0
    assert st["healed"] == 11 and st["failed"] == 0
    assert st["malformed"] == 1 and st["malformedSecrets"] == [MALFORMED]
    assert st["skipped"] == 2  # being deleted + unannotated
    assert set(st["changed"]) == stale
    assert "unhealed" not in st or st["unhealed"] == []
    assert r.condition["status"] == "True" and r.condition["reason"] == "Regenerated"
    assert r.reasons("MalformedToken") and MALFORMED in r.reasons("MalformedToken")[0]

    after = secrets(seed)
    assert set(after) == set(before)  # nothing deleted, nothing new
    for k in stale:
        b, a = before[k], after[k]
        # the same Secret: uid, labels, annotations survive; the token is new and valid
        assert a["metadata"]["uid"] == b["metadata"]["uid"]
        assert a["metadata"].get("labels") == b["metadata"].get("labels")
        assert a["metadata"].get("annotations") == b["metadata"].get("annotations")
        assert token_of(a) and token_of(a) != token_of(b)
        assert review(seed, token_of(a)).get("authenticated") is True, k
        assert review(seed, token_of(b)).get("authenticated") is not True
    untouched = set(before) - stale
    assert DELETING in untouched and UNANNOTATED in untouched and MALFORMED in untouched
    for k in untouched:
        assert after[k]["metadata"]["resourceVersion"] == before[k]["metadata"]["resourceVersion"], k
    # user-created Secrets (not listed by their ServiceAccount) are preserved
    for k in STALE_USER:
        assert after[k]["metadata"]["name"] == k.split("/")[1]

    # idempotence: a second run finds nothing stale and writes nothing
    rv = {k: s["metadata"]["resourceVersion"] for k, s in after.items()}
    again = run_step(seed)
    assert again.status["stale"] == 0 and again.status["regenerated"] == 0
    assert again.condition["reason"] == "NoStaleTokens"
    assert {k: s["metadata"]["resourceVersion"] for k, s in secrets(seed).items()} == rv


def test_jwks_forbidden_falls_back_to_tokenreview(seed):
    st, _ = seed.sim("POST", "/_sim/faults",
                     {"rules": [{"verb": "get", "resource": "/openid/v1/jwks", "code": 403}]})
    assert st == 200
    before = secrets(seed)
    stale = stale_keys(before)
    r = run_step(seed)
    assert r.status["method"] == "TokenReview"
    assert r.status["stale"] == 11 and r.status["regenerated"] == 11 and r.status["healed"] == 11
    assert set(r.status["changed"]) == stale
    assert r.status["malformed"] == 1
    after = secrets(seed)
    for k in set(before) - stale:
        assert after[k]["metadata"]["resourceVersion"] == before[k]["metadata"]["resourceVersion"], k
    again = run_step(seed)
    assert again.status["method"] == "TokenReview" and again.status["stale"] == 0


@pytest.mark.parametrize("code", [409, 422])
def test_conflict_on_guarded_patch_is_redecided(seed, code):
    """409, or 422 as a failed "test" on resourceVersion answers: the Secret is re-read, judged
    again and patched once more."""
    before = secrets(seed)
    st, _ = seed.sim("POST", "/_sim/faults",
                     {"rules": [{"verb": "patch", "resource": "secrets", "code": code, "count": 1}]})
    assert st == 200
    r = run_step(seed)
    assert r.status["regenerated"] == 11 and r.status["failed"] == 0 and r.status["healed"] == 11
    assert "deciding again" in r.stderr
    assert set(secrets(seed)) == set(before)


def test_repeated_conflicts_are_redecided_until_done(seed):
    """A guarded write answered 409 again and again: re-read and decided again (with backoff)
    until it goes through, never counted failed (issue 12)."""
    st, _ = seed.sim("POST", "/_sim/faults",
                     {"rules": [{"verb": "patch", "resource": "secrets", "code": 409, "count": 3}]})
    assert st == 200
    r = run_step(seed)
    assert r.status["failed"] == 0 and r.status["regenerated"] == 11 and r.status["healed"] == 11
    assert r.condition["status"] == "True", r.condition
    again = run_step(seed)
    assert again.status["stale"] == 0


def legacy_seed(tmp_path):
    """The seed scenario with profile legacy (< 1.24: token Secrets auto-created per
    ServiceAccount and recreated when deleted).  A scenario file, because the scenario's own
    `profile: modern` wins over apisim's --profile flag."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "apisim", "apisim",
                       "scenarios", "seed.yaml")
    with open(src) as f:
        text = f.read()
    assert "\nprofile: modern\n" in text
    path = str(tmp_path / "seed-legacy.yaml")
    with open(path, "w") as f:
        f.write(text.replace("\nprofile: modern\n", "\nprofile: legacy\n"))
    return path


def test_delete_mode_legacy_recreates_and_keeps_user_secrets(tmp_path):
    with SimProcess(scenario=legacy_seed(tmp_path)) as sim:
        before = secrets(sim)
        r = run_step(sim, spec={"mode": "Delete", "verifyTimeoutSeconds": 30})
        st = r.status
        assert st["failed"] == 0, r
        assert st["deleted"] >= 9  # the auto-generated <sa>-token-xxxxx Secrets
        # user-created Secrets are not listed by their ServiceAccount: regenerated in place
        assert st["regenerated"] >= len(STALE_USER)
        assert st["healed"] == st["deleted"] + st["regenerated"]
        assert r.condition["status"] == "True", r.condition
        after = secrets(sim)
        for k in STALE_USER:
            assert k in after and after[k]["metadata"]["uid"] == before[k]["metadata"]["uid"]
            assert review(sim, token_of(after[k])).get("authenticated") is True
        deleted = [k for k in st["changed"] if k not in STALE_USER]
        assert len(deleted) == st["deleted"]
        for k in deleted:
            assert k not in after  # gone; the SA got a new Secret with a valid token
            ns = k.split("/")[0]
            sa = before[k]["metadata"]["annotations"]["kubernetes.io/service-account.name"]
            new = [s for kk, s in after.items() if kk.startswith(ns + "/") and
                   s["metadata"].get("annotations", {}).get(
                       "kubernetes.io/service-account.name") == sa and
                   s["metadata"]["uid"] != before[k]["metadata"]["uid"] and token_of(s)]
            assert any(review(sim, token_of(s)).get("authenticated") for s in new), k
        assert DELETING in after and UNANNOTATED in after and MALFORMED in after
        again = run_step(sim, spec={"mode": "Delete", "verifyTimeoutSeconds": 30})
        assert again.status["stale"] == 0 and again.status["deleted"] == 0


def test_delete_mode_modern_reports_not_healed(seed):
    """>= 1.24 does not recreate deleted token Secrets: nothing to verify against -> NotHealed.
    (In the seed every auto-generated Secret is still listed by its ServiceAccount.)"""
    r = run_step(seed, spec={"mode": "Delete", "verifyTimeoutSeconds": 3})
    st = r.status
    if st["deleted"] == 0:
        pytest.skip("the modern profile lists no auto-generated Secrets in .secrets")
    assert r.condition["status"] == "False" and r.condition["reason"] == "NotHealed"
    assert st["unhealed"] and r.reasons("TokensNotHealed")
    assert "none healed for 3s" in r.condition["message"], r.condition


def test_resume_from_status_does_not_count_twice(seed, tmp_path):
    before = secrets(seed)
    keys = pass_order(before)
    status_file = str(tmp_path / "status.json")
    # A run interrupted after the page that ended at keys[5]: counters as it saved them.
    with open(status_file, "w") as f:
        seen = MALFORMED in keys[:6]
        json.dump({"method": "JWKS", "scanned": 6, "stale": 0, "regenerated": 0, "deleted": 0,
                   "failed": 0, "malformed": int(seen), "skipped": 1, "healed": 0,
                   "malformedSecrets": [MALFORMED] if seen else [], "continue": keys[5]}, f)
    r = run_step(seed, status_file=status_file)
    st = r.status
    assert "continue" not in st
    assert st["scanned"] == len(before)  # 6 before + the rest, none twice
    assert st["malformed"] == 1
    assert st["regenerated"] == 11 and st["healed"] == 11
    with open(status_file) as f:
        saved = json.load(f)
    assert saved["regenerated"] == 11


def request_count(sim, verb, resource):
    return sum(r["count"] for r in counters(sim)["requests"]
               if r["verb"] == verb and r["resource"] == resource and r["subresource"] == "")


def test_verification_relists_instead_of_getting_each_secret():
    """600 regenerated Secrets, 1200 token Secrets (3 list pages of 500): verifying them by one
    GET each would cost 600 requests; re-listing costs 3 per round."""
    with SimProcess(scenario="gen:namespaces=10,pods=10,secrets=1200,stale=0.5,nodes=2,csrs=0,seed=3",
                    extra_args=["--sa-key-type", "ec"]) as sim:
        st, _ = sim.sim("POST", "/_sim/counters/reset")
        assert st == 200
        r = run_step(sim, spec={"verifyTimeoutSeconds": 60})
        assert r.status["scanned"] == 1200
        assert r.status["regenerated"] == 600 and r.status["healed"] == 600, r.status
        assert r.condition["reason"] == "Regenerated"
        for k, s in secrets(sim).items():
            assert token_of(s) and review(sim, token_of(s)).get("authenticated") is True, k
        # the scan's 3 pages plus at least one verification re-list of 3 pages ...
        assert request_count(sim, "list", "secrets") >= 6
        # ... and per-Secret GETs only for the few a re-list would not pay off for
        assert request_count(sim, "get", "secrets") < 15
        assert request_count(sim, "patch", "secrets") == 600


def test_verification_waits_while_the_controller_makes_progress():
    """A tokens controller refilling 15 Secrets per second (a real 1.19 one does ~9) needs ~4 s for
    60 regenerated Secrets, longer than verifyTimeoutSeconds 2: the wait moves with each healed
    token and fails only after 2 s WITHOUT progress (issue 12 item 4); the progress is reported."""
    with SimProcess(scenario="gen:namespaces=2,pods=4,secrets=120,stale=0.5,nodes=1,csrs=0,seed=4",
                    extra_args=["--sa-key-type", "ec"]) as sim:
        st, _ = sim.sim("POST", "/_sim/controllers", {"tokenRate": 15})
        assert st == 200
        r = run_step(sim, spec={"verifyTimeoutSeconds": 2})
        assert r.status["regenerated"] == 60 and r.status["healed"] == 60, r.status
        assert r.condition["status"] == "True" and r.condition["reason"] == "Regenerated", r.condition
        partial = [p for p in r.progress if "verifying" in p and "/60 healed" in p
                   and not p.endswith(" 60/60 healed")]
        assert partial, r.progress


def _most_within(stamps, window):
    """The largest number of `stamps` (seconds) inside any interval of `window` seconds."""
    stamps, best, lo = sorted(stamps), 0, 0
    for hi, t in enumerate(stamps):
        while t - stamps[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


@pytest.mark.parametrize("inflight", [1, 8])
def test_writes_in_flight_are_bounded(inflight):
    """Issue 14 item 2: the token writes of a page run in a bounded window of spec.tokens.maxInFlight
    requests. apisim answers each Secret PATCH after 400 ms: one at a time, no two writes can end within
    400 ms of each other; with 8 in flight, writes end together, never more than 8 per 400 ms."""
    with SimProcess(scenario="gen:namespaces=2,pods=4,secrets=48,stale=0.5,nodes=1,csrs=0,seed=5",
                    extra_args=["--sa-key-type", "ec"]) as sim:
        st, _ = sim.sim("POST", "/_sim/faults", {"rules": [{"verb": "patch", "resource": "secrets",
                                                            "latencyMs": 400}]})
        assert st == 200
        r = run_step(sim, spec={"verifyTimeoutSeconds": 30, "maxInFlight": inflight})
        assert r.status["regenerated"] == 24 and r.status["healed"] == 24, r.status
        ends = [datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
                for m in re.finditer(r"^ts=(\S+)Z .*removed stale token", r.stderr, re.M)]
        assert len(ends) == 24, r.stderr[-2000:]
        together = _most_within(ends, 0.39)
        if inflight == 1:
            assert together == 1, sorted(ends)
        else:
            assert 2 <= together <= 8, sorted(ends)


def test_kube_system_tokens_written_first(seed):
    """The tokens controller refills in the order of the writes and the pods step restarts kube-system first:
    kube-system's stale Secrets are written before any other namespace's (in the plain cluster-wide list, billing
    and ci sort before kube-system)."""
    stale = stale_keys(secrets(seed))
    assert any(k.startswith("kube-system/") for k in stale) and any(k < "kube-system/" for k in stale)
    seed.sim("DELETE", "/_sim/writes")
    r = run_step(seed)
    assert r.status["regenerated"] == len(stale), r
    _, body = seed.sim("GET", "/_sim/writes")
    ours = ["%s/%s" % (w["namespace"], w["name"]) for w in body["writes"]
            if w["resource"] == "secrets" and w["user"] == "kubernetes-admin" and w["verb"] == "patch"]
    assert sorted(ours) == sorted(stale), ours
    n = sum(1 for k in stale if k.startswith("kube-system/"))
    assert all(k.startswith("kube-system/") for k in ours[:n]), ours
    # the run handed the wait for the tokens controller to its settle, which verified every one
    assert r.reasons("TokensRegenerated") or r.condition["reason"] == "Regenerated", r
    assert [e for e in r.stdout.splitlines() if '"handoff"' in e], r
    assert r.condition["status"] == "True" and r.status["healed"] == len(stale), r
