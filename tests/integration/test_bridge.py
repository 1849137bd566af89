"""The key snapshot of the zero-downtime bridge (reconcilers/bridge/snapshot.h) against apisim: the operator's
leader writes kubemend-system/kubemend-keys by itself under deploy/'s RBAC; `kubemend keys snapshot` rewrites it
only when it changed and keeps the keys of the previous snapshot after a PKI rebuild. (The real-server suites,
with the key recovered and the bridge installed, are `make test-bridge`.)"""

import json
import subprocess

import kmop
from kmop import SimProcess

CM = "/api/v1/namespaces/kubemend-system/configmaps/kubemend-keys"


def snapshot(sim):
    code, body = sim.request("GET", CM)
    return body if code == 200 else None


def kids(cm):
    return {k["kid"] for k in json.loads(cm["data"]["jwks.json"])["keys"]}


def keys_cli(sim, *args):
    return subprocess.run([kmop.BIN, "keys"] + list(args) + ["--kubeconfig", sim.kubeconfig],
                          capture_output=True, text=True, timeout=120)


def test_operator_writes_the_snapshot_and_the_cli_keeps_old_keys(tmp_path):
    with SimProcess() as sim:
        kmop.install(sim)
        op = kmop.Operator(kmop.sa_kubeconfig(sim), str(tmp_path / "op.log"))
        try:
            cm = kmop.wait_for(lambda: snapshot(sim), timeout=60, what="the operator's key snapshot")
        finally:
            op.stop()
        assert "Forbidden" not in op.text() and "snapshot not written" not in op.text()
        assert set(cm["data"]) == {"jwks.json", "jwks-source", "ca.crt"}
        assert cm["data"]["jwks-source"] == "/openid/v1/jwks"
        assert "BEGIN CERTIFICATE" in cm["data"]["ca.crt"]
        first = kids(cm)
        assert first

        r = keys_cli(sim, "snapshot")
        assert r.returncode == 0 and "unchanged" in r.stdout, r.stdout + r.stderr
        assert snapshot(sim)["metadata"]["resourceVersion"] == cm["metadata"]["resourceVersion"]

        code, _ = sim.sim("POST", "/_sim/pki-rebuild")
        assert code == 200
        r = keys_cli(sim, "snapshot")
        assert r.returncode == 0 and "written" in r.stdout, r.stdout + r.stderr
        after = kids(snapshot(sim))
        assert first < after, (first, after)  # the lost key stays next to the new one


def test_keys_usage_errors():
    r = subprocess.run([kmop.BIN, "keys", "recover"], capture_output=True, text=True)
    assert r.returncode == 2 and "-o FILE is required" in r.stderr
    r = subprocess.run([kmop.BIN, "keys", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown subcommand" in r.stderr
    r = subprocess.run([kmop.BIN, "keys", "snapshot", "-o", "x"], capture_output=True, text=True)
    assert r.returncode == 2
    r = subprocess.run([kmop.BIN, "keys", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "keys recover -o FILE" in r.stdout
