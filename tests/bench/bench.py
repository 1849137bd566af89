#!/usr/bin/env python3
"""make bench — kubemend's recovery at scale, side by side with the seed's kubectl procedure.

Reports; never fails on time.  Every cluster is a fresh tests/apisim process on 127.0.0.1 built by the
large-cluster generator (`gen:` scenario), kubelet delay 0.

  1. kubemend `run --once` on the main size: wall time per step, API requests by verb next to the minimum
     the work needs, peak RSS and CPU seconds (/usr/bin/time -v), objects per CPU-second;
  2. the seed's kubectl procedure on an identical fresh cluster, on a subset, per-object time and ratio;
  3. kubemend at more sizes (peak memory flat, time linear) -> bench-out/scaling.png (gnuplot);
  4. operator mode: CSR approval latency for a burst of CSRs (creation -> Approved), median and p99.
Results: bench-out/results.md (the table the README shows) and bench-out/results.json.
"""

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "apisim"))
from apisim.testing import SimProcess  # noqa: E402

KUBECTL = os.environ.get("KUBECTL") or shutil.which("kubectl") or "/usr/bin/kubectl"
PAGE = 500


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def gen_spec(ns, pods, secrets, stale, nodes, csrs, seed=1):
    return "gen:namespaces=%d,pods=%d,secrets=%d,stale=%s,nodes=%d,csrs=%d,seed=%d" % (
        ns, pods, secrets, stale, nodes, csrs, seed)


def start_sim(spec, tmp, name):
    sim = SimProcess(scenario=spec, extra_args=["--kubelet-delay", "0", "--sa-key-type", "ec"],
                     startup_timeout=900, workdir=os.path.join(tmp, name))
    os.makedirs(sim.tmp, exist_ok=True)
    t0 = time.monotonic()
    sim.start()
    log("  apisim %s ready in %.1f s" % (spec, time.monotonic() - t0))
    return sim


def counters(sim):
    st, body = sim.sim("GET", "/_sim/counters")
    by_verb = {}
    for r in body.get("requests", []):
        if r["resource"].startswith("_sim"):
            continue
        by_verb[r["verb"]] = by_verb.get(r["verb"], 0) + r["count"]
    return by_verb


def parse_time_v(text):
    out = {}
    for key, pat in (("rss_kib", r"Maximum resident set size \(kbytes\): (\d+)"),
                     ("user_s", r"User time \(seconds\): ([\d.]+)"),
                     ("sys_s", r"System time \(seconds\): ([\d.]+)")):
        m = re.search(pat, text)
        out[key] = float(m.group(1)) if m else float("nan")
    return out


EVENT_RE = re.compile(r'^ts=(\S+) .*reason=Step(Started|Completed|Failed|Waiting) message="step (\w+)')


def step_times(log_text):
    """Wall seconds per step from the StepStarted/StepCompleted events in the run's log; a step that handed its
    wait to a settle (StepWaiting: the tokens step) also gets "<step>_handoff", the seconds until then."""
    import datetime
    start, out = {}, {}
    for line in log_text.splitlines():
        m = EVENT_RE.match(line)
        if not m:
            continue
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
        if m.group(2) == "Started":
            start[m.group(3)] = t
        elif m.group(2) == "Waiting" and m.group(3) in start:
            out[m.group(3) + "_handoff"] = t - start[m.group(3)]
        elif m.group(3) in start:
            out[m.group(3)] = t - start[m.group(3)]
    return out


def run_kubemend(bin_path, sim, tmp, label, steps=None, wait_for_ready=True):
    """kubemend run --once under /usr/bin/time -v; returns metrics."""
    rec = os.path.join(tmp, "recovery-%s.yaml" % label)
    with open(rec, "w") as f:
        f.write("apiVersion: kubemend.io/v1alpha1\nkind: ClusterRecovery\nmetadata:\n  name: bench\n"
                "spec:\n  pods:\n    waitForReady: %s\n" % ("true" if wait_for_ready else "false"))
    survey = owner_survey(sim)
    sim.sim("POST", "/_sim/counters/reset")
    errf = os.path.join(tmp, "kubemend-%s.log" % label)
    t0 = time.monotonic()
    with open(errf, "w") as err:
        cp = subprocess.run(["/usr/bin/time", "-v", bin_path, "run", "--once", "--kubeconfig", sim.kubeconfig,
                             "-f", rec, "-o", "json", "--qps", "0", "--log-level", "info"]
                            + (["--steps", steps] if steps else []),
                            stdout=subprocess.PIPE, stderr=err, text=True)
    wall = time.monotonic() - t0
    with open(errf) as f:
        errtext = f.read()
    try:
        status = json.loads(cp.stdout).get("status", json.loads(cp.stdout))
    except ValueError:
        status = {}
    m = parse_time_v(errtext)
    m.update(wall_s=wall, exit=cp.returncode, status=status, requests=counters(sim), survey=survey)
    m["steps"] = step_times(errtext)
    return m


def owner_survey(sim):
    """What proving the owners needs, read from the cluster before the run (admin client, not counted):
    the namespaces whose stale pods belong to Deployments (generated clusters: Deployments only, one
    ReplicaSet each, every pod older than the PKI rebuild) — each needs one paged ReplicaSet list (the
    proof) and one paged Deployment list (the restart marker and resourceVersion the guarded patch needs)."""
    per_ns, stale_ns, cont = {}, set(), ""
    while True:
        st, body = sim.request("GET", "/apis/apps/v1/deployments?limit=500" + ("&continue=" + cont if cont else ""),
                               timeout=120)
        for d in body.get("items", []):
            ns = d["metadata"]["namespace"]
            per_ns[ns] = per_ns.get(ns, 0) + 1
            sa = d["spec"]["template"]["spec"].get("serviceAccountName") or "default"
            if sa != "default" and d["spec"].get("replicas", 1) > 0:
                stale_ns.add(ns)
        cont = body.get("metadata", {}).get("continue")
        if not cont:
            return {"deployment_namespaces": len(stale_ns),
                    "owner_pages": sum(2 * math.ceil(per_ns[n] / PAGE) for n in stale_ns)}


def minimum_requests(size, status, survey):
    """The least the work needs: list pages + one write per changed object + one patch per workload +
    one approval/denial per decided CSR (+ the JWKS fetch, + the two CA ConfigMaps the PKI rebuild time
    is derived from) + the owner proof: per namespace with stale Deployment pods one ReplicaSet list and
    one Deployment list (owner_survey)."""
    ns, pods, secrets, nodes, csrs = size
    t = status.get("tokens", {})
    p = status.get("pods", {})
    c = status.get("csr", {})
    pages = math.ceil(secrets / PAGE) + math.ceil(ns / PAGE) + ns  # token Secrets, namespaces, pods per ns
    pages += math.ceil(csrs / PAGE) + math.ceil(nodes / PAGE)
    pages += survey["owner_pages"]  # ReplicaSets and Deployments of each namespace with stale Deployment pods
    writes = t.get("regenerated", 0) + t.get("deleted", 0) + p.get("restarted", 0) + p.get("evicted", 0)
    writes += c.get("approved", 0) + c.get("denied", 0)
    return pages + writes + 1 + 2


def count_items(sim, path):
    """Items of a list, page by page (admin client)."""
    n, cont = 0, ""
    while True:
        st, body = sim.request("GET", path + ("&" if "?" in path else "?") + "limit=500" +
                               ("&continue=" + cont if cont else ""), timeout=120)
        n += len(body.get("items", []))
        cont = body.get("metadata", {}).get("continue")
        if not cont:
            return n


def seed_procedure(sim, n):
    """The seed article's commands, one kubectl process per object, on the first n objects of each kind."""
    env = dict(os.environ, KUBECONFIG=sim.kubeconfig, KUBECTL=KUBECTL, N=str(n))
    scripts = {
        "tokens": r"""$KUBECTL get secret --all-namespaces | awk '/kubernetes.io\/service-account-token/ {print "'$KUBECTL' delete secret -n " $1 " " $2}' | head -n $N | sh >/dev/null""",
        "pods": r"""$KUBECTL get pods --all-namespaces --field-selector 'spec.serviceAccountName!=default' --no-headers | awk '{print "'$KUBECTL' delete pod --wait=false -n " $1 " " $2}' | head -n $N | sh >/dev/null""",
        "csr": r"""$KUBECTL get csr --no-headers | awk '/Pending/ {print "'$KUBECTL' certificate approve " $1}' | head -n $N | sh >/dev/null""",
    }
    out = {}
    for k, script in scripts.items():
        t0 = time.monotonic()
        subprocess.run(["bash", "-c", script], env=env, check=False)
        out[k] = (time.monotonic() - t0) / n
        log("  seed %-6s %.1f ms per object" % (k, out[k] * 1000))
    return out


def csr_latency(bin_path, tmp, burst, nodes):
    """Operator mode: a ClusterRecovery with a continuous CSR window; burst-create CSRs as the nodes and
    time creation -> Approved from a watch."""
    sim = start_sim(gen_spec(1, 0, 0, 0, nodes, 0), tmp, "latency")
    try:
        sim.kubectl("apply", "-f", os.path.join(ROOT, "crds", "clusterrecoveries.kubemend.io.yaml"))
        sim.kubectl("wait", "--for=condition=Established", "crd/clusterrecoveries.kubemend.io", "--timeout=60s")
        op = subprocess.Popen([bin_path, "operator", "--kubeconfig", sim.kubeconfig, "--namespace", "kube-system",
                               "--metrics-bind-address", "127.0.0.1:0", "--health-probe-bind-address",
                               "127.0.0.1:0", "--qps", "0"], stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(tmp, "operator-latency.log"), "w"))
        rec = ("apiVersion: kubemend.io/v1alpha1\nkind: ClusterRecovery\nmetadata:\n  name: latency\nspec:\n"
               "  tokens: {enabled: false}\n  extensionApiserverAuthentication: {enabled: false}\n"
               "  pods: {enabled: false}\n  csr: {windowSeconds: 3600, continuous: true}\n")
        sim.kubectl("apply", "-f", "-", input=rec)
        sim.kubectl("wait", "--for=condition=Succeeded", "crec/latency", "--timeout=120s")
        from apisim import csrgen
        reqs = []
        for i in range(burst):
            node = "node-%05d" % (i % nodes + 1)
            st, n = sim.request("GET", "/api/v1/nodes/" + node)
            ips = [a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"]
            dns = [a["address"] for a in n["status"]["addresses"] if a["type"] == "Hostname"]
            pem = csrgen.build_csr(csrgen.key_for(node), "system:node:" + node, ["system:nodes"], dns, ips)
            reqs.append((node, csrgen.csr_request_b64(pem)))
        approved = {}
        created = {}
        done = threading.Event()

        def watch():
            import http.client
            conn = http.client.HTTPSConnection("127.0.0.1", sim.port, context=sim.ssl_context(), timeout=600)
            conn.request("GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests?watch=1",
                         headers={"Accept": "application/json"})
            resp = conn.getresponse()
            while not done.is_set():
                line = resp.readline()
                if not line:
                    break
                ev = json.loads(line)
                obj = ev.get("object", {})
                name = obj.get("metadata", {}).get("name", "")
                conds = (obj.get("status") or {}).get("conditions") or []
                if name.startswith("burst-") and any(c.get("type") == "Approved" for c in conds):
                    approved.setdefault(name, time.monotonic())
                    if len(approved) >= burst:
                        break
            conn.close()

        w = threading.Thread(target=watch, daemon=True)
        w.start()
        time.sleep(0.5)
        for i, (node, req) in enumerate(reqs):
            name = "burst-%05d" % i
            body = {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
                    "metadata": {"name": name},
                    "spec": {"request": req, "signerName": "kubernetes.io/kubelet-serving",
                             "usages": ["digital signature", "key encipherment", "server auth"]}}
            st, _ = sim.request("POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", body,
                                headers={"Impersonate-User": "system:node:" + node,
                                         "Impersonate-Group": "system:nodes"})
            created[name] = time.monotonic()
            if st != 201:
                log("  CSR create failed: %s" % st)
        w.join(timeout=120)
        done.set()
        op.terminate()
        op.wait(timeout=30)
        lat = sorted(approved[n] - created[n] for n in approved if n in created)
        if not lat:
            return {"approved": 0, "burst": burst}
        return {"approved": len(lat), "burst": burst, "median_ms": statistics.median(lat) * 1000,
                "p99_ms": lat[min(len(lat) - 1, int(math.ceil(0.99 * len(lat))) - 1)] * 1000}
    finally:
        sim.stop()


def plot(rows, out_png, tmp):
    if not shutil.which("gnuplot"):
        log("  gnuplot missing: no plot")
        return False
    data = os.path.join(tmp, "scaling.dat")
    with open(data, "w") as f:
        for r in rows:
            f.write("%d %.3f %.1f\n" % (r["pods"], r["wall_s"], r["rss_kib"] / 1024.0))
    script = f"""set terminal png size 900,500
set output '{out_png}'
set title 'kubemend run --once: wall time and peak RSS against cluster size'
set xlabel 'pods in the cluster'
set ylabel 'wall time (s)'
set y2label 'peak RSS (MiB)'
set y2tics
set ytics nomirror
set yrange [0:*]
set y2range [0:80]
set arrow from graph 0, second 64 to graph 1, second 64 nohead dashtype 2 lc rgb 'red'
set label 'RSS budget 64 MiB' at graph 0.02, second 66 tc rgb 'red'
set key left top
set grid
plot '{data}' using 1:2 with linespoints lw 2 title 'wall time (s)' axis x1y1, \\
     '{data}' using 1:3 with linespoints lw 2 title 'peak RSS (MiB)' axis x1y2
"""
    subprocess.run(["gnuplot"], input=script, text=True, check=True)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--namespaces", type=int, default=2000)
    ap.add_argument("--pods", type=int, default=50000)
    ap.add_argument("--secrets", type=int, default=20000)
    ap.add_argument("--stale", type=float, default=0.5)
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--csrs", type=int, default=1000)
    ap.add_argument("--scale-pods", default="10000,100000", help="extra sizes (pods) for the scaling runs")
    ap.add_argument("--seed-subset", type=int, default=100, help="objects per kind for the kubectl procedure")
    ap.add_argument("--burst", type=int, default=1000)
    ap.add_argument("--skip", default="", help="comma list of: seed,scaling,latency")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench-out"))
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    os.makedirs(a.out, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="kubemend-bench-")
    results = {"args": vars(a)}
    try:
        size = (a.namespaces, a.pods, a.secrets, a.nodes, a.csrs)
        log("== kubemend run --once: %d namespaces, %d pods, %d token Secrets, %d nodes, %d CSRs" % size)
        sim = start_sim(gen_spec(a.namespaces, a.pods, a.secrets, a.stale, a.nodes, a.csrs), tmp, "main")
        try:
            main_run = run_kubemend(a.bin, sim, tmp, "main")
        finally:
            sim.stop()
        main_run["minimum"] = minimum_requests(size, main_run["status"], main_run["survey"])
        main_run["total_requests"] = sum(main_run["requests"].values())
        st = main_run["status"]
        handled = a.secrets + a.pods + a.csrs
        cpu = main_run["user_s"] + main_run["sys_s"]
        main_run["objects_per_cpu_s"] = handled / cpu if cpu > 0 else float("nan")
        results["main"] = main_run
        log("  exit %d, wall %.1f s, peak RSS %.1f MiB, CPU %.1f s, requests %d (minimum %d)" % (
            main_run["exit"], main_run["wall_s"], main_run["rss_kib"] / 1024, cpu, main_run["total_requests"],
            main_run["minimum"]))

        if "seed" not in skip:
            log("== the same work as the kubectl procedure: pods restarted without waiting (waitForReady false)")
            sim = start_sim(gen_spec(a.namespaces, a.pods, a.secrets, a.stale, a.nodes, a.csrs), tmp, "nowait")
            try:
                pods_nondefault = count_items(
                    sim, "/api/v1/pods?fieldSelector=spec.serviceAccountName%21%3Ddefault")
                nowait = run_kubemend(a.bin, sim, tmp, "nowait", steps="pods", wait_for_ready=False)
            finally:
                sim.stop()
            results["nowait"] = {"pods_step_s": nowait["steps"].get("pods", nowait["wall_s"]),
                                 "pods": pods_nondefault, "exit": nowait["exit"]}
            log("  pods step %.1f s for %d pods on non-default service accounts" % (
                results["nowait"]["pods_step_s"], pods_nondefault))
            log("== the seed's kubectl procedure on an identical fresh cluster (first %d objects per kind)" %
                a.seed_subset)
            sim = start_sim(gen_spec(a.namespaces, a.pods, a.secrets, a.stale, a.nodes, a.csrs), tmp, "seed")
            try:
                results["seed"] = seed_procedure(sim, a.seed_subset)
            finally:
                sim.stop()
            steps = main_run["steps"]
            km = {"tokens": steps.get("tokens", float("nan")) / a.secrets,
                  "csr": steps.get("csr", float("nan")) / max(1, a.csrs),
                  "pods": results["nowait"]["pods_step_s"] / max(1, pods_nondefault)}
            results["kubemend_per_object"] = km
            results["ratios"] = {k: results["seed"][k] / km[k] if km[k] > 0 else float("nan") for k in km}
            total_seed = (results["seed"]["tokens"] * a.secrets + results["seed"]["csr"] * a.csrs +
                          results["seed"]["pods"] * pods_nondefault)
            total_km = km["tokens"] * a.secrets + km["csr"] * a.csrs + km["pods"] * pods_nondefault
            results["ratio"] = total_seed / total_km if total_km > 0 else float("nan")

        rows = []
        if "scaling" not in skip:
            for pods in [int(x) for x in a.scale_pods.split(",") if x]:
                f = pods / a.pods
                sz = (max(1, int(a.namespaces * f)), pods, max(1, int(a.secrets * f)), a.nodes, a.csrs)
                log("== scaling: %d namespaces, %d pods, %d token Secrets" % sz[:3])
                sim = start_sim(gen_spec(sz[0], sz[1], sz[2], a.stale, sz[3], sz[4]), tmp, "scale-%d" % pods)
                try:
                    r = run_kubemend(a.bin, sim, tmp, "scale-%d" % pods)
                finally:
                    sim.stop()
                r["pods"] = pods
                r["minimum"] = minimum_requests(sz, r["status"], r["survey"])
                r["total_requests"] = sum(r["requests"].values())
                rows.append(r)
                log("  wall %.1f s, peak RSS %.1f MiB" % (r["wall_s"], r["rss_kib"] / 1024))
            main_row = dict(main_run, pods=a.pods)
            rows = sorted(rows + [main_row], key=lambda r: r["pods"])
            results["scaling"] = [{k: r[k] for k in ("pods", "wall_s", "rss_kib", "user_s", "sys_s",
                                                     "total_requests", "minimum")} for r in rows]
            results["plot"] = plot(rows, os.path.join(a.out, "scaling.png"), tmp)

        if "latency" not in skip:
            log("== operator mode: CSR approval latency for a burst of %d CSRs" % a.burst)
            results["latency"] = csr_latency(a.bin, tmp, a.burst, min(a.nodes, a.burst))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    write_report(results, a)


def write_report(res, a):
    m = res["main"]
    st = m.get("status", {})
    lines = ["| measure | kubemend | target |", "|---|---|---|"]
    lines.append("| cluster | %d namespaces, %d pods, %d token Secrets (%.0f%% stale), %d nodes, %d CSRs | |" % (
        a.namespaces, a.pods, a.secrets, a.stale * 100, a.nodes, a.csrs))
    lines.append("| exit code / result | %d / %s | 0 |" % (m["exit"], next(
        (c.get("reason") for c in st.get("conditions", []) if c.get("type") == "Succeeded"), "?")))
    lines.append("| wall time | %.1f s | |" % m["wall_s"])
    for step, secs in m.get("steps", {}).items():
        lines.append("| &nbsp; step %s | %.1f s | |" % (step, secs))
    lines.append("| API requests (by verb) | %d (%s) | |" % (m["total_requests"], ", ".join(
        "%s %d" % kv for kv in sorted(m["requests"].items()))))
    lines.append("| minimum the work needs | %d (ratio %.3f) | ≤ 1.05 × |" % (
        m["minimum"], m["total_requests"] / max(1, m["minimum"])))
    lines.append("| peak RSS | %.1f MiB | < 64 MiB |" % (m["rss_kib"] / 1024))
    lines.append("| CPU | %.1f s user + %.1f s sys | |" % (m["user_s"], m["sys_s"]))
    lines.append("| objects per CPU-second | %.0f | |" % m["objects_per_cpu_s"])
    t, p, c = st.get("tokens", {}), st.get("pods", {}), st.get("csr", {})
    lines.append("| work done | tokens stale %s / regenerated %s; workloads restarted %s, pods evicted %s; "
                 "CSRs approved %s, denied %s | |" % (t.get("stale"), t.get("regenerated"), p.get("restarted"),
                                                     p.get("evicted"), c.get("approved"), c.get("denied")))
    if "seed" in res:
        s, km, rt = res["seed"], res["kubemend_per_object"], res["ratios"]
        for kind, what in (("tokens", "token Secret"), ("pods", "pod restart (no readiness wait)"),
                           ("csr", "CSR decision")):
            lines.append("| per %s: kubectl procedure vs kubemend | %.1f ms vs %.3f ms (%.0f×) | ≥ 100× |" % (
                what, s[kind] * 1000, km[kind] * 1000, rt[kind]))
        lines.append("| speed ratio kubemend / kubectl, all this work | %.0f× | ≥ 100× |" % res["ratio"])
    for r in res.get("scaling", []):
        lines.append("| scaling: %d pods | %.1f s, peak RSS %.1f MiB, %d requests (minimum %d) | flat RSS, linear time |"
                     % (r["pods"], r["wall_s"], r["rss_kib"] / 1024, r["total_requests"], r["minimum"]))
    if "latency" in res:
        lat = res["latency"]
        if lat.get("approved"):
            lines.append("| CSR approval latency (%d/%d approved) | median %.0f ms, p99 %.0f ms | < 100 ms, < 1 s |" % (
                lat["approved"], lat["burst"], lat["median_ms"], lat["p99_ms"]))
        else:
            lines.append("| CSR approval latency | none approved | |")
    table = "\n".join(lines)
    cmd = "make bench" + ("" if not os.environ.get("BENCH_ARGS") else " BENCH_ARGS='%s'" % os.environ["BENCH_ARGS"])
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("Produced by `%s` on %s.\n\n%s\n" % (cmd, time.strftime("%Y-%m-%d"), table))
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    print(table)


if __name__ == "__main__":
    main()
