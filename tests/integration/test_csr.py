"""The CSR approval step and the background approver against apisim's seed cluster: the valid
kubelet-serving renewals are approved, each forged one is denied naming its failed check, decided
CSRs are left alone, deny=false leaves them pending, dry run writes nothing, and a CSR created
while the approver runs is decided from its watch event (no relist, no polling)."""

import subprocess

import pytest

from stepsim import (SimProcess, count_requests, create_csr_as_node, csr_conditions, get, kmstep,
                     kmstep_args, wait_for)

CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"

VALID = ["csr-cp-1-serving", "csr-worker-1-serving", "csr-worker-2-serving"]
FORGED = {
    "csr-worker-1-steals-ip": "ipAddressNotOwned",
    "csr-worker-1-steals-dns": "dnsNameNotOwned",
    "csr-not-a-node": "requesterNotNode",
    "csr-worker-2-client-usage": "usageNotAllowed",
    "csr-worker-1-email-san": "emailSANPresent",
    "csr-worker-2-uri-san": "uriSANPresent",
    "csr-cn-mismatch": "subjectMismatch",
    "csr-worker-2-no-org": "subjectMismatch",
    "csr-garbage-pem": "pemInvalid",
    "csr-worker-1-no-sans": "noSANs",
}
OTHER_SIGNER = "csr-worker-2-client"


@pytest.fixture
def seed():
    with SimProcess(scenario="seed") as sim:
        yield sim


def test_matrix_then_idempotent(seed):
    run = kmstep(seed, "csr")
    assert run.rc == 0, run
    st = run.status
    assert (st["approved"], st["denied"], st.get("pending", 0), st["ignored"]) == (3, 10, 0, 1), st
    recent = {r["name"]: r for r in st["recent"]}
    for name in VALID:
        conds = csr_conditions(seed, name)
        assert [(c["type"], c["status"], c["reason"]) for c in conds] == [("Approved", "True", "KubemendApproved")]
        assert recent[name]["decision"] == "Approved"
    for name, check in FORGED.items():
        conds = csr_conditions(seed, name)
        assert [(c["type"], c["status"], c["reason"]) for c in conds] == [("Denied", "True", "KubemendDenied")], name
        assert conds[0]["message"].startswith(check + ":"), (name, conds[0]["message"])
        assert (recent[name]["decision"], recent[name]["reason"]) == ("Denied", check)
    # the client-kubelet CSR belongs to kube-controller-manager: untouched
    assert csr_conditions(seed, OTHER_SIGNER) == []
    assert len(run.reasons("CSRApproved")) == 3 and len(run.reasons("CSRDenied")) == 10
    assert run.condition["status"] == "True"
    # the signer issued certificates only for the approved ones
    signed = wait_for(lambda: [n for n in VALID if get(seed, CSR_PATH + "/" + n)["status"].get("certificate")]
                      == VALID and VALID, what="certificates of the approved CSRs")
    assert signed == VALID
    for name in FORGED:
        assert not get(seed, CSR_PATH + "/" + name)["status"].get("certificate")

    # idempotence: a second pass decides nothing and writes nothing
    writes = count_requests(seed, "update", "certificates.k8s.io/certificatesigningrequests", "approval")
    assert writes == 13
    again = kmstep(seed, "csr")
    assert again.rc == 0, again
    assert (again.status.get("approved", 0), again.status.get("denied", 0)) == (0, 0), again.status
    assert again.events == []
    assert count_requests(seed, "update", "certificates.k8s.io/certificatesigningrequests", "approval") == writes
    for name in VALID:
        assert len(csr_conditions(seed, name)) == 1


def test_deny_off_leaves_pending_and_dry_run_writes_nothing(seed):
    dry = kmstep(seed, "csr", dry_run=True)
    assert dry.rc == 0, dry
    assert (dry.status["approved"], dry.status["denied"]) == (3, 10)
    assert count_requests(seed, "update", "certificates.k8s.io/certificatesigningrequests", "approval") == 0
    for name in VALID + list(FORGED):
        assert csr_conditions(seed, name) == []

    run = kmstep(seed, "csr", spec={"deny": False})
    assert run.rc == 0, run
    assert (run.status["approved"], run.status.get("denied", 0), run.status["pending"]) == (3, 0, 10)
    assert len(run.reasons("CSRLeftPending")) == 10
    for name in FORGED:
        assert csr_conditions(seed, name) == [], name
    for name in VALID:
        assert csr_conditions(seed, name)[0]["type"] == "Approved"


def test_approver_decides_new_csrs_from_the_watch(seed):
    # decide what is pending now, then run the approver and create CSRs while it watches
    assert kmstep(seed, "csr").rc == 0
    lists_before = count_requests(seed, "list", "certificates.k8s.io/certificatesigningrequests")
    proc = subprocess.Popen(kmstep_args(seed, approver=60), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == '{"approver":"started"}'
        # the approver's initial list happened (so what follows arrives as watch events)
        wait_for(lambda: count_requests(seed, "list", "certificates.k8s.io/certificatesigningrequests")
                 > lists_before, what="approver list")
        create_csr_as_node(seed, "worker-1", "csr-late-valid", dns=["worker-1"], ips=["192.0.2.11"])
        create_csr_as_node(seed, "worker-1", "csr-late-forged", dns=["worker-1"], ips=["192.0.2.10"])
        decided = {}
        while len(decided) < 2:
            line = proc.stdout.readline()
            assert line, "approver ended early: %s" % proc.stderr.read()
            if '"decided"' in line:
                import json
                d = json.loads(line)["decided"]
                decided[d["name"]] = d
        assert decided["csr-late-valid"]["decision"] == "Approved"
        assert decided["csr-late-forged"]["decision"] == "Denied"
        assert decided["csr-late-forged"]["reason"] == "ipAddressNotOwned"
        assert csr_conditions(seed, "csr-late-valid")[0]["reason"] == "KubemendApproved"
        assert csr_conditions(seed, "csr-late-forged")[0]["reason"] == "KubemendDenied"
        # one list at start, then only the watch: no polling, no relist
        assert count_requests(seed, "list", "certificates.k8s.io/certificatesigningrequests") == lists_before + 1
        # decided CSRs stay decided: the approver's own writes came back as MODIFIED events
        assert count_requests(seed, "update", "certificates.k8s.io/certificatesigningrequests", "approval") == 15
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_pass_lists_nodes_once_and_gets_only_unlisted_ones(seed):
    # a CSR of a node that does not exist: not in the list, so read on its own (404 -> denied)
    create_csr_as_node(seed, "ghost-1", "csr-ghost", dns=["ghost-1"], ips=["192.0.2.99"])
    seed.sim("POST", "/_sim/counters/reset")
    run = kmstep(seed, "csr")
    assert run.rc == 0, run
    assert (run.status["approved"], run.status["denied"]) == (3, 11), run.status
    recent = {r["name"]: r for r in run.status["recent"]}
    assert recent["csr-ghost"]["reason"] == "nodeNotFound"
    assert count_requests(seed, "list", "nodes") == 1
    assert count_requests(seed, "get", "nodes", code=200) == 0
    assert count_requests(seed, "get", "nodes", code=404) == 1


def test_pass_gets_nodes_when_the_list_is_refused(seed):
    st, _ = seed.sim("POST", "/_sim/faults", {"rules": [{"verb": "list", "resource": "nodes", "code": 403}]})
    assert st == 200
    seed.sim("POST", "/_sim/counters/reset")
    run = kmstep(seed, "csr")
    assert run.rc == 0, run
    assert (run.status["approved"], run.status["denied"]) == (3, 10), run.status
    for name in VALID:
        assert csr_conditions(seed, name)[0]["type"] == "Approved"
    # every serving CSR that names a node read it on its own
    assert count_requests(seed, "get", "nodes") == 12


def test_a_san_another_node_reports_is_denied(seed):
    """A node may write any address into its own status; a SAN another Node reports is still not its own:
    denied by the pass and by the approver (its address index lists the Nodes again when it is old)."""
    assert kmstep(seed, "csr").rc == 0  # the seed's CSRs decided first
    code, body = seed.request("PATCH", "/api/v1/nodes/worker-1/status", {"status": {"addresses": [
        {"type": "InternalIP", "address": "192.0.2.11"}, {"type": "Hostname", "address": "worker-1"},
        {"type": "InternalIP", "address": "::ffff:192.0.2.12"}, {"type": "ExternalDNS", "address": "Worker-2"}]}},
        headers={"Content-Type": "application/merge-patch+json"})
    assert code == 200, body
    create_csr_as_node(seed, "worker-1", "csr-claims-worker-2-ip", dns=["worker-1"], ips=["192.0.2.12"])
    create_csr_as_node(seed, "worker-1", "csr-own-addresses", dns=["worker-1"], ips=["192.0.2.11"])
    run = kmstep(seed, "csr")
    assert run.rc == 0, run
    recent = {r["name"]: r for r in run.status["recent"]}
    assert recent["csr-claims-worker-2-ip"]["reason"] == "ipAddressOfOtherNode", recent
    assert "worker-2" in csr_conditions(seed, "csr-claims-worker-2-ip")[0]["message"]
    assert recent["csr-own-addresses"]["decision"] == "Approved"
    proc = subprocess.Popen(kmstep_args(seed, approver=60), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == '{"approver":"started"}'
        create_csr_as_node(seed, "worker-1", "csr-claims-worker-2-name", dns=["worker-2"])
        while True:
            line = proc.stdout.readline()
            assert line, "approver ended early: %s" % proc.stderr.read()
            if "csr-claims-worker-2-name" in line and '"decided"' in line:
                break
        assert csr_conditions(seed, "csr-claims-worker-2-name")[0]["message"].startswith("dnsNameOfOtherNode:")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
