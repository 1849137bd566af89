"""The zero-downtime bridge on a real control plane (issue 15), shared by test_bridge_*.py:

    seed + disaster -> `kubemend keys recover` (from the snapshot, or from the stale token Secrets alone)
    -> kube-apiserver restarted with the recovered key as a second --service-account-key-file (the bridge)
    -> old tokens valid again (TokenReview) -> `kubemend run --once` (status.tokens.bridged, BridgeRetirable;
       exit 3, Verified False while the old key is trusted) -> what still depends on the old key restarted
    -> BridgeRetirable True -> bridge removed -> Verified True.
A token prober (prober.py, started before the disaster) counts the 401s the pods' own tokens get from the moment
the bridge is installed until it is removed: zero, as stale token Secrets are replaced while bridged
(reconcilers/tokens/replace.h), not regenerated under the pods that mounted them.
"""

import base64
import json
import os
import subprocess
import time

from realk8s import seed
from scene import KUBECTL, KUBEMEND  # noqa: F401  (KUBECTL: the environment's, for symmetry)

OPERATOR_NS = "kubemend-system"


def kubemend(cp, *args, timeout=900):
    """(returncode, stdout, stderr, seconds) of `kubemend ARGS --kubeconfig admin.conf`."""
    t0 = time.time()
    r = subprocess.run([KUBEMEND] + list(args) + ["--kubeconfig", cp.admin_kubeconfig], capture_output=True,
                       text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr, time.time() - t0


def lost_sa_pub(cp):
    with open(os.path.join(cp.workdir, "lost-pki-%d" % cp.rebuilds, "pki", "sa.pub")) as f:
        return f.read()


def valid_tokens(cp):
    """{"ns/name": token} of the token Secrets whose token the server accepts (TokenReview) now."""
    toks = token_secrets(cp)
    ok = reviewed(cp, toks)
    return {k: t for k, t in toks.items() if ok[k]}


def token_secrets(cp):
    """{"ns/name": token} of the token Secrets holding a token."""
    body = cp.client().get("/api/v1/secrets?fieldSelector=type%3D" + seed.SA_TOKEN.replace("/", "%2F"))
    out = {}
    for s in body["items"]:
        raw = (s.get("data") or {}).get("token")
        if raw:
            out["%s/%s" % (s["metadata"]["namespace"], s["metadata"]["name"])] = base64.b64decode(raw).decode()
    return out


def kid_of(token):
    """The kid header of a JWT, None for a malformed one (the seed keeps a garbage token Secret)."""
    try:
        head = token.split(".")[0]
        return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))).get("kid")
    except (ValueError, TypeError, AttributeError):
        return None


def reviewed(cp, tokens):
    """{"ns/name": authenticated} by TokenReview."""
    return {k: bool(cp.token_review(t).get("authenticated")) for k, t in tokens.items()}


def ensure_namespace(cp, name=OPERATOR_NS):
    st, _ = cp.request("GET", "/api/v1/namespaces/" + name)
    if st == 404:
        cp.client().create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                  "metadata": {"name": name}})


def run_once(cp, tmp_path, spec=None, steps=None):
    """(rc, final status) of `kubemend run --once -o json` with an optional ClusterRecovery spec."""
    args = ["run", "--once", "-o", "json"]
    if spec is not None:
        path = os.path.join(str(tmp_path), "recovery-%d.json" % time.time_ns())
        with open(path, "w") as f:
            json.dump({"apiVersion": "kubemend.io/v1alpha1", "kind": "ClusterRecovery",
                       "metadata": {"name": "bridged"}, "spec": spec}, f)
        args += ["-f", path]
    if steps:
        args += ["--steps", steps]
    rc, out, err, _ = kubemend(cp, *args, timeout=900)
    assert out.strip(), err[-3000:]
    return rc, json.loads(out), err


def restart_with_keys(cp, files):
    """kube-apiserver restarted with these extra --service-account-key-file files (as the kubelet does when the
    static pod manifest changes), then the controller-manager (its leader election may lose the Lease meanwhile,
    and it exits then; under kubeadm the kubelet restarts it)."""
    cp.restart_apiserver(extra_key_files=files)
    cp.restart_controller_manager()


def condition(status, ctype):
    return next((c for c in status.get("conditions") or [] if c["type"] == ctype), None)


def bridge_and_recover(cp, tmp_path, pem_path, old_tokens, prober):
    """The bridge installed with pem_path; old tokens valid again; the recovery run until BridgeRetirable is True;
    the bridge removed. prober (prober.TokenProber, running since before the disaster) must count no 401 from
    the bridge's installation to its removal. Returns the first run's final status."""
    assert not any(reviewed(cp, old_tokens).values()), "the old tokens must be rejected before the bridge"
    restart_with_keys(cp, [pem_path])
    ok = reviewed(cp, old_tokens)
    assert all(ok.values()), "bridged kube-apiserver rejects %s" % [k for k, v in ok.items() if not v]
    outage = prober.mark()  # from the disaster to the bridge: every old token was refused
    print("token prober, disaster -> bridge: %s" % {k: outage[k] for k in ("probes", "unauthorized", "pods")})
    assert outage["unauthorized"] > 0, outage  # the prober sees the outage it is to see none of below
    prober.wait_rounds(1)

    spec = {"pods": {"includeDefaultServiceAccount": True, "deleteOwnerlessPods": True}}
    rc, status, err = run_once(cp, tmp_path, spec=spec)
    # Every step succeeded, but the server still trusts the old key: not healed yet (exit 3, Verified False).
    assert rc == 3, err[-3000:]
    assert status["phase"] == "Succeeded", status.get("conditions")
    verified = condition(status, "Verified")
    assert verified["status"] == "False" and "bridge: the API server still accepts" in verified["message"], verified
    tok = status["tokens"]
    assert tok.get("bridged", 0) >= len(old_tokens) - 1 and tok["bridged"] > 0, tok
    assert tok.get("healed", 0) >= tok["bridged"], tok
    cond = condition(status, "BridgeRetirable")
    assert cond is not None, status.get("conditions")
    first = status

    # The seed's Secret without the uid annotation is left to the admin by the tokens step; the server still
    # accepts its old token, so the bridge must stay until it is handled (here: deleted, as an admin would).
    if cond["status"] == "False" and "shop/frontend-manual-token" in cond["message"]:
        cp.client().delete("/api/v1/namespaces/shop/secrets/frontend-manual-token")
    # Whatever still depends on the old key is gone after the pods' restarts settle: rerun until True.
    deadline = time.time() + 240
    while cond["status"] != "True" and time.time() < deadline:
        time.sleep(5)
        rc, status, err = run_once(cp, tmp_path, spec=spec, steps="tokens")
        cond = condition(status, "BridgeRetirable")
    assert cond["status"] == "True", cond
    assert "--service-account-key-file" in cond["message"] and "kube-apiserver.yaml" in cond["message"]
    # The pods' own tokens while bridged: the run, the restarts, the retirement of the replaced Secrets.
    seen = prober.mark()
    print("token prober, bridged recovery: %s" % {k: seen[k] for k in (
        "probes", "unauthorized", "pods", "rounds", "errors", "window_s", "round_s_max")})
    assert seen["rounds"] > 0 and seen["pods"] > 0, seen
    assert seen["unauthorized"] == 0, seen
    if "legacy" in prober.captured().values():  # pods mount token Secrets (< 1.21): those were replaced
        assert tok.get("replaced", 0) > 0, tok

    # No token Secret holds an old-kid token any more; retire the bridge: every valid token stays valid.
    old_kids = set(kid_of(t) for t in old_tokens.values())
    now = valid_tokens(cp)  # (a Secret being deleted may keep an old token: the server rejects it anyway)
    assert now
    still = sorted(k for k, t in now.items() if kid_of(t) in old_kids)
    assert not still, "accepted with the old kid after BridgeRetirable=True: %s" % still
    restart_with_keys(cp, [])
    ok = reviewed(cp, now)
    assert all(ok.values()), [k for k, v in ok.items() if not v]
    assert not any(reviewed(cp, old_tokens).values())
    # The bridge gone, the same recovery verifies the cluster healed.
    rc, status, err = run_once(cp, tmp_path, spec=spec, steps="tokens")
    verified = condition(status, "Verified")
    assert rc == 0 and verified["status"] == "True", (verified, err[-3000:])
    assert condition(status, "BridgeRetirable") is None  # run --once: no bridge seen, nothing to say
    return first
