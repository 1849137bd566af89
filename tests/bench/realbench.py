#!/usr/bin/env python3
"""make bench-real — kubemend on a REAL control plane, side by side with the seed's kubectl procedure and with
the API server's own capacity, in one run (issue 14).

For each version (KUBEMEND_K8S_VERSIONS or --versions) and each size (--tokens):
  1. a fresh control plane (tests/realk8s: etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, the
     kubelet/scheduler simulator) with --namespaces namespaces, token Secrets of non-default ServiceAccounts
     (--tokens in all) and Deployments on those ServiceAccounts (--pods pods in all);
  2. the seed's disaster (PKI and sa.key rebuilt, kubelets re-joined);
  3. kubemend `run --once` with DEFAULT settings (as a ServiceAccount with cluster-admin, so the audit log
     counts its requests): wall time, time to Succeeded, per step times, peak RSS and CPU (/usr/bin/time -v),
     requests by verb (audit log) next to the minimum the work needs, the token write phase's rate (audit
     timestamps of its Secret PATCHes), the controller-manager's refill (a poller: token Secrets re-signed);
  4. the disaster again (same cluster shape, everything stale again);
  5. the server's capacity: tests/tools/kmload PATCHes every token Secret (a metadata annotation: the same
     verb and resource as kubemend's token write) with 1 and --inflight requests in flight; and the
     controller-manager's rollout bound: every Deployment restarted at once, the time until all are rolled out;
  6. the seed's kubectl procedure (one kubectl process per object) on --seed-subset objects per kind;
  7. operator mode: the approval latency of --csr-burst kubelet-serving CSRs (creation -> Approved), paced below
     the server's write capacity (--csr-pace) and as an unpaced burst.
Reports, never fails on time: bench-out/real/results.md, results.json and real.png (gnuplot). --merge A.json,B.json
reports earlier runs together.
"""

import argparse
import calendar
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "realk8s"))
sys.path.insert(0, os.path.join(ROOT, "tests", "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from realk8s import assets, cluster, seed  # noqa: E402
from realk8s.kubelet import KubeletSim  # noqa: E402
from bench import parse_time_v, step_times  # noqa: E402
from scene import rolled_out  # noqa: E402 — the real-server suites' "rolled out and Ready"

KUBECTL = os.environ.get("KUBECTL") or shutil.which("kubectl") or "/usr/bin/kubectl"
SA_NS, SA_NAME = "kubemend-bench", "kubemend"
SA_USER = "system:serviceaccount:%s:%s" % (SA_NS, SA_NAME)
SA_GROUP = "system:serviceaccounts:" + SA_NS
TOKEN_SEL = "/api/v1/secrets?fieldSelector=type%3Dkubernetes.io%2Fservice-account-token"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def scenario(path, tokens, namespaces, pods, nodes):
    """A seed-format scenario (tests/realk8s/realk8s/seed.yaml's schema): `tokens` ServiceAccounts with a token
    Secret spread over `namespaces`, two Deployments per namespace on the first two of them, `pods` pods."""
    per_ns = max(2, tokens // namespaces)
    replicas = max(1, pods // (2 * namespaces))
    doc = {"name": "bench", "before": {
        "nodes": [{"name": "worker-%d" % i} for i in range(nodes)],
        "namespaces": ["bench-%03d" % n for n in range(namespaces)],
        "serviceAccounts": [{"namespace": "bench-%03d" % n, "name": "app-%d" % i, "tokenSecret": True}
                            for n in range(namespaces) for i in range(per_ns)],
        "workloads": [{"kind": "Deployment", "namespace": "bench-%03d" % n, "name": "app-%d" % i,
                       "replicas": replicas, "serviceAccountName": "app-%d" % i}
                      for n in range(namespaces) for i in range(2)]}}
    with open(path, "w") as f:
        json.dump(doc, f)  # JSON is YAML
    return path


def paged(c, path):
    """Every item of a list (path without query or with one), a page of 500 at a time."""
    items, cont, sep = [], "", "&" if "?" in path else "?"
    while True:
        body = c.get(path + sep + "limit=500" + ("&continue=" + cont if cont else ""))
        items += body["items"]
        cont = (body.get("metadata") or {}).get("continue")
        if not cont:
            return items


def token_shas(cp):
    """{"ns/name": sha256 of data.token or None} of every token Secret (admin, paged)."""
    out = {}
    for s in paged(cp.client(), TOKEN_SEL):
        tok = (s.get("data") or {}).get("token")
        out["%s/%s" % (s["metadata"]["namespace"], s["metadata"]["name"])] = (
            hashlib.sha256(tok.encode()).hexdigest() if tok else None)
    return out


class RefillWatch(threading.Thread):
    """Polls the token Secrets every second: (seconds since start, how many hold a token other than before)."""

    def __init__(self, cp, before):
        super().__init__(daemon=True)
        self.cp, self.before, self.points, self.stop_ev = cp, before, [], threading.Event()
        self.t0 = time.monotonic()

    def run(self):
        while not self.stop_ev.wait(1.0):
            try:
                now = token_shas(self.cp)
            except Exception:  # noqa: BLE001 — a poll may fail while the server is busy; the next one counts
                continue
            n = sum(1 for k, v in now.items() if v and v != self.before.get(k))
            self.points.append((time.monotonic() - self.t0, n))


def bench_identity(cp):
    """A ServiceAccount bound to cluster-admin in its own namespace (audited by group); its token kubeconfig."""
    c = cp.client()
    c.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": SA_NS}})
    c.create("/api/v1/namespaces/%s/serviceaccounts" % SA_NS,
             {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SA_NAME}})
    c.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "kubemend-bench"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": SA_NAME, "namespace": SA_NS}]})


def stamp(s):
    """RFC 3339 with fractions -> epoch seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", s)
    return calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")) + float(m.group(2) or 0)


def audit_summary(cp, since):
    """kubemend's requests after `since` (epoch): by verb, and the token Secret write phase (first and last
    Secret patch/delete received) -> {"by_verb", "total", "token_writes", "write_phase_s"}."""
    by_verb, writes = {}, []
    for e in cp.audit_events(SA_USER):
        t = stamp(e["requestReceivedTimestamp"])
        if t < since:
            continue
        by_verb[e["verb"]] = by_verb.get(e["verb"], 0) + 1
        if e["verb"] in ("patch", "delete") and (e.get("objectRef") or {}).get("resource") == "secrets":
            writes.append(t)
    span = (max(writes) - min(writes)) if len(writes) > 1 else float("nan")
    return {"by_verb": by_verb, "total": sum(by_verb.values()), "token_writes": len(writes),
            "write_phase_s": span}


def minimum(status, namespaces_with_stale, list_pages):
    """The least the work needs: list pages (counted by the caller from the cluster's sizes) + one write per
    changed object + the owner proof (one ReplicaSet and one Deployment list per namespace with stale pods) +
    the JWKS and the two CA ConfigMaps the rebuild time comes from."""
    t, p, c = status.get("tokens", {}), status.get("pods", {}), status.get("csr", {})
    writes = t.get("regenerated", 0) + t.get("deleted", 0) + p.get("restarted", 0) + p.get("evicted", 0)
    writes += c.get("approved", 0) + c.get("denied", 0)
    return list_pages + 2 * namespaces_with_stale + writes + 3


def run_kubemend(a, cp, kubeconfig, out_dir, label):
    rec = os.path.join(out_dir, "recovery.yaml")
    with open(rec, "w") as f:
        f.write("apiVersion: kubemend.io/v1alpha1\nkind: ClusterRecovery\nmetadata:\n  name: bench\nspec: %s\n" % (
            a.spec or "{}"))
    before = token_shas(cp)
    watch = RefillWatch(cp, before)
    watch.start()
    errf = os.path.join(out_dir, "kubemend-%s.log" % label)
    since = time.time()
    t0 = time.monotonic()
    with open(errf, "w") as err:
        proc = subprocess.run(["/usr/bin/time", "-v", a.bin, "run", "--once", "--kubeconfig", kubeconfig, "-f", rec,
                               "-o", "json", "--log-level", "info"], stdout=subprocess.PIPE, stderr=err, text=True)
    wall = time.monotonic() - t0
    watch.stop_ev.set()
    watch.join()
    with open(errf) as f:
        text = f.read()
    if a.keep_logs:
        os.makedirs(a.out, exist_ok=True)
        shutil.copy(errf, os.path.join(a.out, "kubemend-%s-%s.log" % (label, cp.version)))
    try:
        doc = json.loads(proc.stdout)
        status = doc.get("status", doc)
    except ValueError:
        status = {}
    m = parse_time_v(text)
    m.update(wall_s=wall, exit=proc.returncode, steps=step_times(text), status=status)
    m["audit"] = audit_summary(cp, since - 1)
    m["refill"] = watch.points
    conds = {c.get("type"): c.get("status") for c in status.get("conditions", [])}
    m["succeeded"], m["verified"] = conds.get("Succeeded"), conds.get("Verified")
    return m


def refill_rate(points):
    """Tokens per second the controller-manager re-signed, over the middle of the refill (10%..90%)."""
    if not points or points[-1][1] < 10:
        return float("nan")
    n = points[-1][1]
    lo = next(t for t, k in points if k >= 0.1 * n)
    hi = next(t for t, k in points if k >= 0.9 * n)
    return 0.8 * n / (hi - lo) if hi > lo else float("nan")


def capacity(a, cp, paths, inflight):
    """kmload PATCHing a metadata annotation on each path with `inflight` requests in flight."""
    body = json.dumps({"metadata": {"annotations": {"bench.kubemend.io/capacity": str(time.time())}}})
    proc = subprocess.run([os.path.join(a.tools, "kmload"), "--kubeconfig", cp.admin_kubeconfig, "--method", "PATCH",
                           "--content-type", "application/merge-patch+json", "--body", body, "--inflight",
                           str(inflight)], input="\n".join(paths) + "\n", stdout=subprocess.PIPE, text=True,
                          check=True)
    return json.loads(proc.stdout)


def rollout_capacity(cp, timeout=1800):
    """The controller-manager's own pace of replacing pods: every bench Deployment restarted at once (one PATCH of
    its template's restartedAt each, as `kubectl rollout restart`), then the time until all are rolled out and
    Ready again (scene.rolled_out, polled every 0.5 s) -> {"workloads", "pods", "seconds", "pods_per_s"}: the least any tool
    needs to restart them all on this control plane (its ReplicaSet controller creates and deletes every pod
    under its client's rate limit)."""
    c = cp.client()

    def deployments():
        return [d for d in paged(c, "/apis/apps/v1/deployments") if d["metadata"]["namespace"].startswith("bench-")]

    deps = deployments()
    stamp_ = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.monotonic()
    for d in deps:
        c.patch("/apis/apps/v1/namespaces/%s/deployments/%s" % (d["metadata"]["namespace"], d["metadata"]["name"]),
                {"spec": {"template": {"metadata": {"annotations": {
                    "kubectl.kubernetes.io/restartedAt": stamp_}}}}})
    while time.monotonic() - t0 < timeout:
        time.sleep(0.5)
        try:
            if all(rolled_out("Deployment", d) for d in deployments()):
                break
        except Exception:  # noqa: BLE001 — a poll may fail while the server is busy; the next one counts
            continue
    secs = time.monotonic() - t0
    pods = sum(d["spec"].get("replicas", 1) for d in deps)
    return {"workloads": len(deps), "pods": pods, "seconds": secs, "pods_per_s": pods / secs}


def seed_procedure(cp, n, out_dir):
    """The seed's commands, one kubectl process per object, on the first n objects of each kind: per-object s."""
    env = dict(os.environ, KUBECONFIG=cp.admin_kubeconfig, KUBECTL=KUBECTL, N=str(n))
    scripts = {
        "tokens": r"""$KUBECTL get secret --all-namespaces | awk '/kubernetes.io\/service-account-token/ && $1 ~ /^bench-/ {print "'$KUBECTL' delete secret -n " $1 " " $2}' | head -n $N | sh >/dev/null""",
        "pods": r"""$KUBECTL get pods --all-namespaces --field-selector 'spec.serviceAccountName!=default' --no-headers | awk '$1 ~ /^bench-/ {print "'$KUBECTL' delete pod --wait=false -n " $1 " " $2}' | head -n $N | sh >/dev/null""",
    }
    out = {}
    for k, script in scripts.items():
        t0 = time.monotonic()
        subprocess.run(["bash", "-c", script], env=env, check=False)
        out[k] = (time.monotonic() - t0) / n
        log("    seed procedure %-6s %.1f ms per object" % (k, out[k] * 1000))
    return out


def csr_latency(a, cp, kubelet, burst, pace=0.0, prefix="burst-"):
    """Operator mode on the real server (the CRD applied, kubemend operator as admin, a ClusterRecovery with a
    continuous CSR window): `burst` valid kubelet-serving CSRs created as the nodes, 4 threads each waiting `pace`
    seconds between two CSRs (0 = as fast as the server takes them); creation -> Approved from a watch ->
    {"burst", "approved", "p50_ms", "p99_ms", "created_per_s", "all_approved_s"}."""
    c = cp.client()
    validate = ["--validate=false"] if cp.minor < 25 else []  # x-kubernetes-validations: unknown before 1.25
    # Applied once per cluster: a second client-side apply of this CRD fails on 1.19 ("cannot convert int64 to
    # float64" in the server's patch of the last-applied annotation).
    if cp.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clusterrecoveries.kubemend.io")[0] != 200:
        cp.kubectl("apply", *validate, "-f", os.path.join(ROOT, "crds", "clusterrecoveries.kubemend.io.yaml"))
    cp.kubectl("wait", "--for=condition=Established", "crd/clusterrecoveries.kubemend.io", "--timeout=60s")
    log_path = os.path.join(cp.workdir, "operator-latency.log")
    op = subprocess.Popen([a.bin, "operator", "--kubeconfig", cp.admin_kubeconfig, "--namespace", "kube-system",
                           "--metrics-bind-address", "0", "--health-probe-bind-address", "0"] + a.operator_args.split(),
                          stdout=subprocess.DEVNULL, stderr=open(log_path, "w"))
    created, approved, stop = {}, {}, threading.Event()
    try:
        rec = ("apiVersion: kubemend.io/v1alpha1\nkind: ClusterRecovery\nmetadata:\n  name: latency\nspec:\n"
               "  tokens: {enabled: false}\n  extensionApiserverAuthentication: {enabled: false}\n"
               "  pods: {enabled: false}\n  csr: {windowSeconds: 3600, continuous: true%s}\n" % (
                   ", maxInFlight: %d" % a.csr_max_in_flight if a.csr_max_in_flight else ""))
        cp.kubectl("apply", *validate, "-f", "-", input=rec)
        cp.kubectl("wait", "--for=condition=Succeeded", "crec/latency", "--timeout=180s", check=False)
        rv = c.get("/apis/certificates.k8s.io/v1/certificatesigningrequests?limit=1")["metadata"]["resourceVersion"]

        def watch():
            for ev in c.watch("/apis/certificates.k8s.io/v1/certificatesigningrequests", rv, stop=stop):
                obj = ev.get("object") or {}
                name = (obj.get("metadata") or {}).get("name", "")
                if name.startswith(prefix) and any(x.get("type") == "Approved" for x in
                                                     (obj.get("status") or {}).get("conditions") or []):
                    approved.setdefault(name, time.monotonic())
                    if len(approved) >= burst:
                        return

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        nodes = sorted(kubelet.nodes)
        reqs = {}  # built before the burst: the latency is the server's and kubemend's, not the CSR's signing
        for i in range(burst):
            name = "%s%05d" % (prefix, i)
            reqs[name] = kubelet.serving_csr_request(nodes[i % len(nodes)], name=name)
        time.sleep(0.5)

        def create(lo):
            for i in range(lo, burst, 4):
                name = "%s%05d" % (prefix, i)
                client, body = reqs[name]
                t0 = time.monotonic()
                client.create("/apis/certificates.k8s.io/v1/certificatesigningrequests", body)
                created[name] = t0
                if pace:
                    time.sleep(pace)

        ts = [threading.Thread(target=create, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        w.join(timeout=180)
    finally:
        stop.set()
        op.terminate()
        op.wait(timeout=30)
        if a.keep_logs:
            os.makedirs(a.out, exist_ok=True)
            shutil.copy(log_path, os.path.join(a.out, "operator-latency-%s.log" % cp.version))
    lat = sorted(approved[n] - created[n] for n in approved if n in created)
    if not lat:
        return {"burst": burst, "approved": 0, "pace_s": pace}
    t_first = min(created.values())
    return {"burst": burst, "approved": len(lat), "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000,
            "created_per_s": len(created) / max(1e-9, max(created.values()) - t_first),
            "all_approved_s": max(approved.values()) - t_first, "pace_s": pace}


def one(a, version, tokens, tmp):
    log("== %s, %d token Secrets, %d pods in %d namespaces" % (version, tokens, a.pods, a.namespaces))
    res = {"version": version, "tokens": tokens, "spec": a.spec}
    cp = cluster.ControlPlane(version, os.path.join(tmp, "%s-%d" % (version, tokens)), audit_groups=[SA_GROUP])
    kubelet = None
    try:
        cp.start()
        kubelet = KubeletSim(cp.workdir, []).start()
        scen = scenario(os.path.join(cp.workdir, "scenario.json"), tokens, a.namespaces, a.pods, a.nodes)
        t0 = time.monotonic()
        desc = seed.install(cp, kubelet, scenario=scen, timeout=1800)
        res["install_s"] = time.monotonic() - t0
        seed.disaster(cp, kubelet, desc)
        bench_identity(cp)
        kubeconfig = cp.token_kubeconfig(cp.token_for(SA_NS, SA_NAME, expiration_seconds=7200))
        stale = len(token_shas(cp))
        res["token_secrets"] = stale
        log("  installed in %.0f s; %d token Secrets stale; kubemend run --once (default settings)" % (
            res["install_s"], stale))
        m = run_kubemend(a, cp, kubeconfig, cp.workdir, "run")
        pages = -(-stale // 500) + 2 + a.namespaces + 1  # token Secrets, namespaces, pods per namespace, nodes
        m["minimum"] = minimum(m["status"], a.namespaces, pages)
        m["refill_per_s"] = refill_rate(m["refill"])
        m["refill_bound_s"] = stale / m["refill_per_s"] if m["refill_per_s"] == m["refill_per_s"] else None
        m["write_per_s"] = (m["audit"]["token_writes"] / m["audit"]["write_phase_s"]
                            if m["audit"]["write_phase_s"] > 0 else float("nan"))
        res["kubemend"] = m
        log("  exit %d in %.1f s (Succeeded %s, Verified %s); %d requests (minimum %d); RSS %.1f MiB; token "
            "writes %.0f/s; controller refill %.1f/s" % (m["exit"], m["wall_s"], m["succeeded"], m["verified"],
                                                          m["audit"]["total"], m["minimum"], m["rss_kib"] / 1024,
                                                          m["write_per_s"], m["refill_per_s"]))
        log("  the disaster again; the server's capacity (kmload)")
        cp.rebuild_pki()
        kubelet.rejoin()
        kubelet.wait_nodes_ready(timeout=120)
        paths = ["/api/v1/namespaces/%s/secrets/%s" % tuple(k.split("/")) for k in sorted(token_shas(cp))]
        res["capacity"] = {str(n): capacity(a, cp, paths, n) for n in sorted({1, 8, a.inflight})}
        for n, c in res["capacity"].items():
            log("    %s in flight: %.0f PATCH/s (p50 %.1f ms, p99 %.1f ms, %d errors)" % (
                n, c["per_second"], c["p50_ms"], c["p99_ms"], c["errors"]))
        res["rollout"] = rollout_capacity(cp)
        log("    the controller-manager's rollout of all %d Deployments at once: %.1f s (%.1f pods/s)" % (
            res["rollout"]["workloads"], res["rollout"]["seconds"], res["rollout"]["pods_per_s"]))
        res["seed"] = seed_procedure(cp, a.seed_subset, cp.workdir)
        if a.csr_burst:
            csr_runs(a, cp, kubelet, res)
    finally:
        if kubelet:
            kubelet.stop()
        cp.stop()
    best = max(c["per_second"] for c in res["capacity"].values())
    km_ms = 1000.0 / res["kubemend"]["write_per_s"] if res["kubemend"]["write_per_s"] > 0 else float("nan")
    res["ratios"] = {"seed_over_kubemend": res["seed"]["tokens"] * 1000 / km_ms,
                     "kubemend_over_capacity": res["kubemend"]["write_per_s"] / best if best else float("nan")}
    return res


def csr_runs(a, cp, kubelet, res):
    """The CSR approval latency twice: paced at --csr-pace (a re-join wave below the server's write capacity) into
    res["csr"], then as fast as the server takes the creations into res["csr_burst"]."""
    for key, pace, prefix in (("csr", a.csr_pace, "paced-"), ("csr_burst", 0.0, "burst-")):
        if key == "csr" and not pace:
            continue
        try:
            res[key] = csr_latency(a, cp, kubelet, a.csr_burst, pace, prefix)
        except Exception as e:  # noqa: BLE001 - the run's other measures stay
            res[key] = {"burst": a.csr_burst, "approved": 0, "error": repr(e)[:500]}
        log("    CSR approval latency, %s: %s" % ("paced" if pace else "unpaced burst", res[key]))


def csr_only(a, version, tmp):
    """--csr-only: a small cluster (--nodes nodes, a few workloads), then the CSR approval latency alone."""
    log("== %s, CSR approval latency only (burst of %d)" % (version, a.csr_burst))
    cp = cluster.ControlPlane(version, os.path.join(tmp, "%s-csr" % version))
    kubelet = None
    try:
        cp.start()
        kubelet = KubeletSim(cp.workdir, []).start()
        scen = scenario(os.path.join(cp.workdir, "scenario.json"), 4, 2, 4, a.nodes)
        seed.install(cp, kubelet, scenario=scen, timeout=600)
        res = {"version": version}
        csr_runs(a, cp, kubelet, res)
        return res
    finally:
        if kubelet:
            kubelet.stop()
        cp.stop()


def plot(results, out_png, tmp):
    """bench-out/real/real.png (gnuplot): per run, the milliseconds per token Secret of the seed's procedure, of
    kubemend and of the server's capacity (log scale); the time to Verified against the controller-manager's
    refill and rollout bounds; peak RSS. False when gnuplot is missing."""
    runs = [r for r in results if "kubemend" in r]
    if not runs or not shutil.which("gnuplot"):
        log("  gnuplot missing or nothing measured: no plot")
        return False
    data = os.path.join(tmp, "real.dat")
    with open(data, "w") as f:
        for r in runs:
            m = r["kubemend"]
            best = max(c["per_second"] for c in r["capacity"].values())
            f.write('"%s %dk" %.3f %.3f %.3f %.1f %.1f %.1f %.1f\n' % (
                r["version"], round(r["token_secrets"] / 1000.0), r["seed"]["tokens"] * 1000,
                1000.0 / m["write_per_s"], 1000.0 / best, m["wall_s"], m["refill_bound_s"] or 0,
                (r.get("rollout") or {}).get("seconds", 0), m["rss_kib"] / 1024.0))
    script = f"""set terminal png size 1200,520
set output '{out_png}'
set multiplot layout 1,3 title 'kubemend on a real control plane (make bench-real, 2-core machine)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics rotate by -30
set grid ytics
set key below vertical
set title 'ms per token Secret (log)'
set logscale y
set yrange [1:300]
plot '{data}' using 2:xtic(1) title 'kubectl procedure', '' using 3 title 'kubemend', '' using 4 title 'server capacity'
unset logscale y
set yrange [0:*]
set title 'time to Verified vs the controller-manager (s)'
plot '{data}' using 5:xtic(1) title 'kubemend: time to Verified', '' using 6 title 'refill bound', '' using 7 title 'rollout bound'
set title 'peak RSS (MiB), budget 64'
set yrange [0:80]
plot '{data}' using 8:xtic(1) title 'kubemend peak RSS', 64 with lines dashtype 2 lc rgb 'red' title 'budget'
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    return True


def report(results, out):
    lines = ["| version | token Secrets | kubemend exit / Verified | wall | token writes / tokens settled | "
             "token write rate | server capacity "
             "(PATCH/s, 1 / N in flight) | seed procedure per Secret | kubemend per Secret | ×seed | ×capacity | "
             "controller refill | requests / minimum | peak RSS | CPU |", "|" + "---|" * 15]
    for r in results:
        if "kubemend" not in r:
            continue
        m, cap = r["kubemend"], r["capacity"]
        caps = " / ".join("%.0f" % cap[k]["per_second"] for k in sorted(cap, key=int))
        lines.append("| %s | %d | %d / %s | %.1f s | %.1f / %.1f s | %.0f/s | %s | %.1f ms | %.2f ms | %.0f× | %.0f%% | "
                     "%.1f/s (bound %.0f s) | %d / %d | %.1f MiB | %.1f s |" % (
                         r["version"], r["token_secrets"], m["exit"], m["verified"], m["wall_s"],
                         m["steps"].get("tokens_handoff", float("nan")), m["steps"].get("tokens", float("nan")),
                         m["write_per_s"],
                         caps, r["seed"]["tokens"] * 1000, 1000.0 / m["write_per_s"],
                         r["ratios"]["seed_over_kubemend"], 100 * r["ratios"]["kubemend_over_capacity"],
                         m["refill_per_s"], m["refill_bound_s"] or float("nan"), m["audit"]["total"], m["minimum"],
                         m["rss_kib"] / 1024, m["user_s"] + m["sys_s"]))
    lines += ["", "| version | token Secrets / pods | spec | time to Verified | token writes / refill bound | "
              "pods step / rollout bound | the least possible (max of the two bounds) |", "|" + "---|" * 7]
    for r in results:
        if "kubemend" not in r:
            continue
        m, ro = r["kubemend"], r.get("rollout") or {}
        bound = max(m["refill_bound_s"] or 0, ro.get("seconds", 0))
        lines.append("| %s | %d / %s | `%s` | %.1f s | %.1f / %.0f s | %.1f / %s | %s |" % (
            r["version"], r["token_secrets"], ro.get("pods", "?"), r.get("spec") or "{}", m["wall_s"],
            m["steps"].get("tokens_handoff", float("nan")), m["refill_bound_s"] or float("nan"),
            m["steps"].get("pods", float("nan")), "%.0f s" % ro["seconds"] if ro else "not measured",
            "%.0f s" % bound if ro else "not measured"))
    for r in results:
        for key, what in (("csr", "paced"), ("csr_burst", "unpaced burst")):
            x = r.get(key) or {}
            if x.get("approved"):
                lines.append("")
                lines.append("CSR approval latency on %s (operator mode, %s: created at %.0f/s; %d/%d approved, all "
                             "%.1f s after the first creation): p50 %.0f ms, p99 %.0f ms" % (
                                 r["version"], what, x["created_per_s"], x["approved"], x["burst"],
                                 x["all_approved_s"], x["p50_ms"], x["p99_ms"]))
    table = "\n".join(lines)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("Produced by `make bench-real` on %s (real kube-apiserver, etcd, kube-controller-manager on "
                "127.0.0.1; 2 cores).\n\n%s\n" % (time.strftime("%Y-%m-%d"), table))
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    tmp = tempfile.mkdtemp(prefix="kubemend-realplot-")
    try:
        plot(results, os.path.join(out, "real.png"), tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tools", required=True, help="directory with kmload")
    ap.add_argument("--versions", default=os.environ.get("KUBEMEND_K8S_VERSIONS", ""))
    ap.add_argument("--tokens", default="1000,5000")
    ap.add_argument("--namespaces", type=int, default=50)
    ap.add_argument("--pods", type=int, default=1000)
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--inflight", type=int, default=32)
    ap.add_argument("--seed-subset", type=int, default=200)
    ap.add_argument("--csr-burst", type=int, default=1000, help="CSRs for the approval latency (0 = skip)")
    ap.add_argument("--csr-pace", type=float, default=0.04,
                    help="seconds each of the 4 creators waits between CSRs in the paced run (0 = no paced run)")
    ap.add_argument("--keep-logs", action="store_true", help="copy kubemend's logs (the recovery run, the CSR operator) to --out")
    ap.add_argument("--csr-max-in-flight", type=int, default=0, help="spec.csr.maxInFlight (0 = the default)")
    ap.add_argument("--operator-args", default="", help="extra flags for the operator of the CSR latency run")
    ap.add_argument("--merge", default="", help="comma-separated results JSON files: report them together, run nothing")
    ap.add_argument("--csr-only", action="store_true", help="only the CSR approval latency, on a small cluster")
    ap.add_argument("--spec", default="", help="the ClusterRecovery spec of the kubemend run (YAML/JSON flow, "
                    "e.g. '{pods: {parallelNamespaces: 1}}'; default {}: every default)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-out", "real"))
    a = ap.parse_args()
    if a.merge:  # the table and plot of earlier runs' results.json / results-partial.json files
        results = []
        for path in a.merge.split(","):
            with open(path) as f:
                results.extend(json.load(f))
        report(results, a.out)
        return
    versions = [v for v in a.versions.split(",") if v] or assets.available_versions()
    if not versions:
        print("bench-real: skipped: %s" % assets.skip_reason())
        return
    tmp = tempfile.mkdtemp(prefix="kubemend-realbench-")
    results = []
    try:
        for v in versions:
            if a.csr_only:
                results.append(csr_only(a, v, tmp))
                continue
            for n in [int(x) for x in a.tokens.split(",") if x]:
                results.append(one(a, v, n, tmp))
                os.makedirs(a.out, exist_ok=True)
                with open(os.path.join(a.out, "results-partial.json"), "w") as f:  # a later run may fail
                    json.dump(results, f, indent=1, default=str)
    finally:
        cluster.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)
    report(results, a.out)


if __name__ == "__main__":
    main()
