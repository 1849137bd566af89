"""The extensionApiserverAuthentication step against apisim's seed cluster (old + new CA in both
bundles after the PKI rebuild): dry run, cleanup with a one-time backup, idempotence, conflict
retry, pinned fingerprints, unexpected content left untouched, re-added old CA reported.

The step runs through build/tools/kmstep --step extauth."""

import hashlib
import json
import os
import ssl
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from stepsim import SimProcess, StepRun, tools_dir  # noqa: E402

CM = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
BACKUP = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication-backup-r1"
KEYS = ("client-ca-file", "requestheader-client-ca-file")


def run_step(sim, spec=None, dry_run=False, status_file=None):
    args = [os.path.join(tools_dir(), "kmstep"), "--kubeconfig", sim.kubeconfig, "--step",
            "extauth", "--recovery", "r1", "--spec", json.dumps(spec or {})]
    if dry_run:
        args.append("--dry-run")
    if status_file:
        args += ["--status-file", status_file]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    r = StepRun(p.returncode, p.stdout, p.stderr)
    assert p.returncode == 0, r
    return r


def get(sim, path):
    return sim.request("GET", path)


def certs(pem):
    """PEM blocks of a bundle, in order."""
    out, cur = [], None
    for line in pem.splitlines():
        if line.startswith("-----BEGIN"):
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line.startswith("-----END"):
                out.append("\n".join(cur) + "\n")
                cur = None
    return out


def fingerprint(block):
    der = ssl.PEM_cert_to_DER_cert(block)
    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, len(h), 2))


def not_before(block):
    out = subprocess.run(["openssl", "x509", "-noout", "-startdate", "-subject"], input=block,
                         capture_output=True, text=True, check=True).stdout
    lines = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    nb = [v for k, v in lines.items() if k.strip() == "notBefore"][0]
    return nb, out.split("subject=", 1)[1].strip()


def expected_removed(pem, current=""):
    """Blocks a newer certificate of the same subject supersedes (the current CA also wins a
    tie).  apisim mints the old and the new CAs within seconds; the front-proxy CA is not a
    "current" CA, so when both front-proxy CAs carry the same notBefore second nothing tells
    them apart and both stay."""
    import email.utils
    cur = {fingerprint(b) for b in certs(current)}
    infos = []
    for b in certs(pem):
        nb, subj = not_before(b)
        t = email.utils.parsedate_to_datetime(nb.replace(" GMT", " +0000").replace("  ", " "))
        infos.append((b, subj, t, fingerprint(b) in cur))
    return [b for b, subj, t, c in infos if not c and any(
        s2 == subj and (t2 > t or (t2 == t and c2)) for _, s2, t2, c2 in infos)]


def current_ca(sim):
    st, pki = sim.sim("GET", "/_sim/pki")
    assert st == 200
    return pki["caCert"]


def expected(sim, data):
    return {k: expected_removed(data[k], current_ca(sim) if k == "client-ca-file" else "")
            for k in KEYS}


@pytest.fixture
def seed():
    with SimProcess(scenario="seed") as sim:
        yield sim


def test_dry_run_then_cleanup_backup_once_idempotent(seed, tmp_path):
    st, orig = get(seed, CM)
    assert st == 200
    for k in KEYS:
        assert len(certs(orig["data"][k])) == 2
    st, pki = seed.sim("GET", "/_sim/pki")
    assert st == 200
    new_ca = pki["caCert"]

    gone = expected(seed, orig["data"])
    assert len(gone["client-ca-file"]) == 1  # the old cluster CA
    want = sorted((k, fingerprint(b), "superseded") for k in KEYS for b in gone[k])

    dry = run_step(seed, dry_run=True)
    assert dry.condition["status"] == "True" and dry.condition["reason"] == "DryRun"
    assert dry.status["phase"] == "DryRun"
    assert sorted((x["key"], x["fingerprint"], x["reason"]) for x in dry.status["removed"]) == want
    st, now = get(seed, CM)
    assert now["metadata"]["resourceVersion"] == orig["metadata"]["resourceVersion"]
    assert get(seed, BACKUP)[0] == 404

    status_file = str(tmp_path / "status.json")
    r = run_step(seed, status_file=status_file)
    assert r.condition["status"] == "True" and r.condition["reason"] == "Cleaned", r.condition
    st_ = r.status
    assert st_["backup"] == "extension-apiserver-authentication-backup-r1"
    assert st_["kept"] == 4 - len(want) and st_["phase"] == "Cleaned"
    assert sorted((x["key"], x["fingerprint"], x["reason"]) for x in st_["removed"]) == want
    assert st_["removed"][0]["subject"] == "CN=kubernetes"
    assert r.reasons("BackupCreated") and r.reasons("OldCAsRemoved")

    st, after = get(seed, CM)
    for k in KEYS:
        assert certs(after["data"][k]) == [b for b in certs(orig["data"][k]) if b not in gone[k]]
    assert after["data"]["client-ca-file"] == new_ca or \
        certs(after["data"]["client-ca-file"]) == certs(new_ca)
    # every other key untouched
    for k, v in orig["data"].items():
        if k not in KEYS:
            assert after["data"][k] == v
    st, backup = get(seed, BACKUP)
    assert st == 200 and backup["data"] == orig["data"]
    assert backup["metadata"]["annotations"]["kubemend.io/recovery"] == "r1"

    # second run (same recovery, same status): nothing to do, no write, backup untouched
    again = run_step(seed, status_file=status_file)
    assert again.condition["status"] == "True" and again.condition["reason"] == "AlreadyClean"
    assert not again.reasons("BackupCreated")
    assert get(seed, CM)[1]["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]
    assert get(seed, BACKUP)[1]["metadata"]["resourceVersion"] == \
        backup["metadata"]["resourceVersion"]

    # a fresh run (no status) must not overwrite the existing backup either
    fresh = run_step(seed)
    assert fresh.condition["reason"] == "AlreadyClean"
    assert get(seed, BACKUP)[1]["data"] == orig["data"]


def test_existing_backup_is_kept(seed):
    st, orig = get(seed, CM)
    mine = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "extension-apiserver-authentication-backup-r1",
                         "namespace": "kube-system"},
            "data": {"note": "older backup"}}
    st, _ = seed.request("POST", "/api/v1/namespaces/kube-system/configmaps", mine)
    assert st == 201
    r = run_step(seed)
    assert r.condition["reason"] == "Cleaned"
    assert get(seed, BACKUP)[1]["data"] == {"note": "older backup"}


def test_conflict_is_retried(seed):
    st, orig = get(seed, CM)
    st, _ = seed.sim("POST", "/_sim/faults",
                     {"rules": [{"verb": "update", "resource": "configmaps", "code": 409,
                                 "count": 2}]})
    assert st == 200
    r = run_step(seed)
    assert r.condition["reason"] == "Cleaned", r
    assert "conflict" in r.stderr
    assert len(r.reasons("BackupCreated")) == 1
    st, after = get(seed, CM)
    gone = expected(seed, orig["data"])
    for k in KEYS:
        assert len(certs(after["data"][k])) == 2 - len(gone[k])
    assert len(certs(after["data"]["client-ca-file"])) == 1
    assert get(seed, BACKUP)[1]["data"] == orig["data"]


def test_pinned_fingerprint_kept(seed):
    st, orig = get(seed, CM)
    old_client = certs(orig["data"]["client-ca-file"])[0]
    pin = fingerprint(old_client).lower()  # case and colons do not matter
    r = run_step(seed, spec={"pinnedFingerprints": [pin]})
    st, after = get(seed, CM)
    assert certs(after["data"]["client-ca-file"]) == certs(orig["data"]["client-ca-file"])
    assert all(x["key"] == "requestheader-client-ca-file" for x in r.status.get("removed", []))
    fp_gone = expected(seed, orig["data"])["requestheader-client-ca-file"]
    assert r.condition["reason"] == ("Cleaned" if fp_gone else "AlreadyClean")
    assert len(certs(after["data"]["requestheader-client-ca-file"])) == 2 - len(fp_gone)


def test_invalid_pin_fails_before_reading(seed):
    p = subprocess.run([os.path.join(tools_dir(), "kmstep"), "--kubeconfig", seed.kubeconfig,
                        "--step", "extauth", "--spec", json.dumps({"pinnedFingerprints": ["xyz"]})],
                       capture_output=True, text=True, timeout=60)
    r = StepRun(p.returncode, p.stdout, p.stderr)
    assert p.returncode == 1
    assert any("pinnedFingerprints[0]" in x.get("error", "") for x in r.lines)


@pytest.fixture
def seed_static():
    """The seed without simulated controllers: the apiserver trust controller would overwrite
    broken content at once."""
    with SimProcess(scenario="seed", extra_args=["--no-controllers"]) as sim:
        yield sim


def test_unexpected_content_left_untouched(seed_static):
    seed = seed_static
    st, cm = get(seed, CM)
    cm["data"]["requestheader-client-ca-file"] = "not a certificate\n"
    st, cm = seed.request("PUT", CM, cm)
    assert st == 200
    r = run_step(seed)
    assert r.condition["status"] == "False" and r.condition["reason"] == "UnexpectedContent"
    assert "requestheader-client-ca-file" in r.condition["message"]
    st, after = get(seed, CM)
    assert after["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]
    assert get(seed, BACKUP)[0] == 404
    # no data object at all
    del cm["data"]
    st, cm = seed.request("PUT", CM, cm)
    assert st == 200
    r = run_step(seed)
    assert r.condition["status"] == "False" and r.condition["reason"] == "UnexpectedContent"
    assert "no data" in r.condition["message"]
    assert get(seed, CM)[1]["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]


def test_readded_old_ca_is_reported_not_fought(seed, tmp_path):
    st, orig = get(seed, CM)
    status_file = str(tmp_path / "status.json")
    r = run_step(seed, status_file=status_file)
    assert r.condition["reason"] == "Cleaned"
    # An API server still running with the old CA merges it back (as the trust controller does).
    st, cm = get(seed, CM)
    cm["data"]["client-ca-file"] = orig["data"]["client-ca-file"]
    st, cm = seed.request("PUT", CM, cm)
    assert st == 200
    again = run_step(seed, status_file=status_file)
    assert again.condition["status"] == "False" and again.condition["reason"] == "OldCAReAdded"
    old_fp = fingerprint(certs(orig["data"]["client-ca-file"])[0])
    assert again.status["readded"] == [old_fp]
    assert old_fp in again.condition["message"]
    assert any(old_fp in m for m in again.reasons("ReAdded"))
    assert again.status["phase"] == "OldCAReAdded"
    # not removed again: the ConfigMap was not written
    st, now = get(seed, CM)
    assert now["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]
    assert len(certs(now["data"]["client-ca-file"])) == 2
