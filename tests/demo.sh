#!/usr/bin/env bash
# make demo — the full recovery of a cluster just after a PKI rebuild, shown with kubectl.
#
# 1. starts the seed cluster (a kubeadm cluster after a lost /etc/kubernetes): a REAL control plane
#    (tests/realk8s: etcd + kube-apiserver + kube-controller-manager of the newest version in
#    $KUBEMEND_K8S_ASSETS, default ../shared/k8s, the kubelet simulator, the PKI rebuilt), or,
#    where no binaries are found (or with DEMO_BACKEND=apisim), tests/apisim's `seed` scenario,
# 2. shows what is broken (stale tokens checked by TokenReview, pending CSRs, CA bundle,
#    kube-public/cluster-info),
# 3. real server: installs kubemend as the README says (kubectl apply -k deploy/, the example
#    ClusterRecovery) and runs the operator process as its ServiceAccount (no registry holds the
#    image, so the Deployment's pod cannot run it); apisim: installs the CRD and runs the
#    operator with the simulator's admin kubeconfig; then follows the ClusterRecovery to Succeeded,
# 4. prints a before/after summary.
# Everything binds to 127.0.0.1 and is stopped on exit.  Usage: tests/demo.sh path/to/kubemend
set -euo pipefail

BIN=${1:?usage: demo.sh path/to/kubemend}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${DEMO_OUT:-$ROOT/demo-out}
PY=/usr/bin/python3
KUBECTL=${KUBECTL:-$(command -v kubectl || echo /usr/bin/kubectl)}
REC=after-pki-rebuild
rm -rf "$OUT" && mkdir -p "$OUT"
export KUBECONFIG=$OUT/kubeconfig

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
k() { "$KUBECTL" "$@"; }

# The real control plane's version (the newest found), or nothing (DEMO_BACKEND=apisim: nothing).
real_version() {
    [ "${DEMO_BACKEND:-}" = apisim ] && return 0
    "$PY" -c 'import sys; sys.path.insert(0, sys.argv[1])
from realk8s import assets
v = assets.available_versions()
print(v[-1] if v else "")' "$ROOT/tests/realk8s"
}
VERSION=$(real_version)

start_real() {
    bold "Starting a real Kubernetes $VERSION control plane with the seed cluster, then rebuilding its PKI"
    echo "(etcd + kube-apiserver + kube-controller-manager on 127.0.0.1 and the kubelet simulator for"
    echo " 3 nodes, from tests/realk8s: about a minute)"
    (cd "$ROOT/tests/realk8s" && exec "$PY" -m realk8s.cluster --version "$VERSION" --workdir "$OUT/k8s" \
        --seed >"$OUT/cluster.out" 2>"$OUT/cluster.log") &
    pids+=($!)
    for _ in $(seq 1 3000); do
        grep -q '^KUBECONFIG=' "$OUT/cluster.out" 2>/dev/null && break
        kill -0 "${pids[0]}" 2>/dev/null || { tail -30 "$OUT/cluster.log" >&2; exit 1; }
        sleep 0.2
    done
    grep -q '^KUBECONFIG=' "$OUT/cluster.out" || { echo "the control plane did not start" >&2; exit 1; }
    cat "$OUT/cluster.out"
    cp "$OUT/k8s/admin.conf" "$KUBECONFIG"
}

start_apisim() {
    bold "Starting the API simulator with the after-PKI-rebuild 'seed' cluster"
    (cd "$ROOT/tests/apisim" && exec "$PY" -m apisim --scenario seed --kubeconfig-out "$KUBECONFIG" \
        --kubelet-delay 1 >"$OUT/apisim.out" 2>"$OUT/apisim.log") &
    pids+=($!)
    for _ in $(seq 1 300); do
        grep -q '^READY' "$OUT/apisim.out" 2>/dev/null && break
        kill -0 "${pids[0]}" 2>/dev/null || { cat "$OUT/apisim.log" >&2; exit 1; }
        sleep 0.1
    done
    grep '^READY' "$OUT/apisim.out" || { echo "apisim did not start" >&2; exit 1; }
}

if [ -n "$VERSION" ]; then
    start_real
elif [ "${DEMO_BACKEND:-}" = apisim ]; then
    echo "DEMO_BACKEND=apisim: the demo runs against tests/apisim, the API simulator."
    start_apisim
else
    echo "No real Kubernetes binaries found (\$KUBEMEND_K8S_ASSETS, default ../shared/k8s): the demo runs against tests/apisim, the API simulator."
    start_apisim
fi

# Counts token Secrets whose token the API server rejects, asking it through TokenReview.
review_tokens() {
    "$PY" - "$KUBECTL" <<'EOF'
import base64, json, subprocess, sys
kubectl = sys.argv[1]
def kj(*args, stdin=None):
    r = subprocess.run([kubectl, *args], input=stdin, capture_output=True, text=True, check=True)
    return json.loads(r.stdout)
secrets = kj("get", "secrets", "-A", "--field-selector", "type=kubernetes.io/service-account-token", "-o", "json")
stale, valid, empty = [], 0, 0
for s in secrets["items"]:
    tok = (s.get("data") or {}).get("token")
    name = s["metadata"]["namespace"] + "/" + s["metadata"]["name"]
    if not tok:
        empty += 1
        continue
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
              "spec": {"token": base64.b64decode(tok).decode()}}
    r = kj("create", "--raw", "/apis/authentication.k8s.io/v1/tokenreviews", "-f", "-",
           stdin=json.dumps(review))
    if r.get("status", {}).get("authenticated"):
        valid += 1
        continue
    md = s["metadata"]
    ann = md.get("annotations") or {}
    why = ""
    if md.get("deletionTimestamp"):
        why = " (being deleted: kubemend leaves it alone)"
    elif not (ann.get("kubernetes.io/service-account.name") and ann.get("kubernetes.io/service-account.uid")):
        why = " (no service-account annotations: kubemend leaves it alone)"
    elif base64.b64decode(tok).count(b".") != 2:
        why = " (not a JWT: kubemend reports it)"
    stale.append(name + why)
print(f"  token Secrets: {len(secrets['items'])}, valid: {valid}, rejected by the API server: {len(stale)}"
      + (f", without a token yet: {empty}" if empty else ""))
for n in stale[:12]:
    print("    rejected:", n)
if len(stale) > 12:
    print(f"    ... and {len(stale) - 12} more")
EOF
}

ca_count() {
    k get configmap -n kube-system extension-apiserver-authentication -o json | "$PY" -c '
import json, sys
d = json.load(sys.stdin)["data"]
for key in ("client-ca-file", "requestheader-client-ca-file"):
    n = d.get(key, "").count("BEGIN CERTIFICATE")
    print("  %s: %d CA certificate(s)" % (key, n))'
}

# Whether kube-public/cluster-info (what `kubeadm join` checks) holds the cluster's current CA (the
# admin kubeconfig's); nothing where the cluster has no cluster-info.
cluster_info() {
    k get configmap -n kube-public cluster-info -o json 2>/dev/null | "$PY" -c '
import base64, json, sys, yaml
kc = yaml.safe_load(json.load(sys.stdin)["data"]["kubeconfig"])
ca = base64.b64decode(kc["clusters"][0]["cluster"]["certificate-authority-data"])
with open(sys.argv[1]) as f:
    cur = base64.b64decode(yaml.safe_load(f)["clusters"][0]["cluster"]["certificate-authority-data"])
print("  kube-public/cluster-info: " + ("the current cluster CA" if ca == cur else
      "an OLD CA, not the current cluster CA (kubeadm join cannot verify the cluster)"))' "$KUBECONFIG" || true
}

bold "BEFORE: what the PKI rebuild left behind"
k get nodes -o wide
echo
review_tokens
echo
k get csr
echo
ca_count
cluster_info
review_tokens >"$OUT/before-tokens.txt"
k get pods -A -o wide >"$OUT/before-pods.txt"

# The README's operator-mode install; this process plays the Deployment's pod.
install_real() {
    bold "Installing kubemend as the README says"
    (cd "$ROOT" && k apply -k deploy/)
    k wait --for=condition=Established crd/clusterrecoveries.kubemend.io
    echo "(no registry holds the kubemend image here, so the Deployment's pod cannot run it: the demo"
    echo " runs the same process, with the Deployment's args, as the kubemend ServiceAccount)"
    local token server opconf=$OUT/kubemend-operator.conf
    token=$(k create token kubemend -n kubemend-system --duration=3600s)
    server=$(k config view --minify -o jsonpath='{.clusters[0].cluster.server}')
    KUBECONFIG=$opconf k config set-cluster demo --server="$server" \
        --certificate-authority="$OUT/k8s/pki/ca.crt" --embed-certs >/dev/null
    KUBECONFIG=$opconf k config set-credentials kubemend --token="$token" >/dev/null
    KUBECONFIG=$opconf k config set-context demo --cluster=demo --user=kubemend >/dev/null
    KUBECONFIG=$opconf k config use-context demo >/dev/null
    "$BIN" operator --kubeconfig "$opconf" --namespace kubemend-system --leader-elect \
        --metrics-bind-address 127.0.0.1:0 --health-probe-bind-address 127.0.0.1:0 >"$OUT/operator.log" 2>&1 &
    pids+=($!)
    bold "Creating ClusterRecovery/$REC"
    (cd "$ROOT" && k apply -f crds/example-recovery.yaml)
}

install_apisim() {
    bold "Installing the ClusterRecovery CRD and starting the operator"
    k apply -k "$ROOT/crds"
    k wait --for=condition=Established crd/clusterrecoveries.kubemend.io --timeout=30s
    "$BIN" operator --kubeconfig "$KUBECONFIG" --namespace kube-system --metrics-bind-address 127.0.0.1:0 \
        --health-probe-bind-address 127.0.0.1:0 >"$OUT/operator.log" 2>&1 &
    pids+=($!)
    bold "Creating ClusterRecovery/$REC"
    k apply -f - <<EOF
apiVersion: kubemend.io/v1alpha1
kind: ClusterRecovery
metadata:
  name: $REC
spec:
  tokens:
    mode: Regenerate
  csr:
    windowSeconds: 600
  pods:
    namespaces: [monitoring]
    maxConcurrent: 3
    namespaceTimeoutSeconds: 60
EOF
}

if [ -n "$VERSION" ]; then install_real; else install_apisim; fi

bold "Following it (kubectl get crec)"
k get crec
deadline=$((SECONDS + 300))
last=""
while :; do
    line=$(k get crec "$REC" --no-headers 2>/dev/null || true)
    [ "$line" != "$last" ] && { echo "$line"; last=$line; }
    reason=$(k get crec "$REC" -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].status}' 2>/dev/null || true)
    [ "$reason" = "True" ] || [ "$reason" = "False" ] && break
    [ $SECONDS -gt $deadline ] && { echo "timed out" >&2; break; }
    kill -0 "${pids[-1]}" 2>/dev/null || { echo "operator exited" >&2; tail -20 "$OUT/operator.log"; exit 1; }
    sleep 1
done
k wait --for=condition=Succeeded "crec/$REC" --timeout=10s || true
k wait --for=condition=Verified "crec/$REC" --timeout=120s || true

bold "kubectl describe crec $REC"
k describe crec "$REC"

bold "AFTER"
review_tokens
echo
k get csr -o custom-columns='NAME:.metadata.name,REQUESTOR:.spec.username,CONDITION:.status.conditions[0].type,REASON:.status.conditions[0].reason,MESSAGE:.status.conditions[0].message'
echo
ca_count
cluster_info
echo
k get crec "$REC" -o json >"$OUT/recovery.json"
review_tokens >"$OUT/after-tokens.txt"
"$PY" - "$OUT/recovery.json" "$OUT/before-tokens.txt" "$OUT/after-tokens.txt" <<'EOF'
import json, sys
st = json.load(open(sys.argv[1])).get("status", {})
before = open(sys.argv[2]).read().strip().splitlines()[0].strip()
t = st.get("tokens", {})
e = st.get("extensionApiserverAuthentication", {})
c = st.get("csr", {})
p = st.get("pods", {})
print("Summary")
print(f"  tokens    before: {before}")
print(f"            after:  {open(sys.argv[3]).read().strip().splitlines()[0].strip()}")
print(f"            kubemend ({t.get('method', '?')}): scanned {t.get('scanned', 0)}, stale {t.get('stale', 0)}, "
      f"regenerated {t.get('regenerated', 0)}, deleted {t.get('deleted', 0)}, healed {t.get('healed', 0)}, "
      f"malformed {t.get('malformed', 0)}, skipped {t.get('skipped', 0)}, failed {t.get('failed', 0)}")
print(f"  CA bundle removed {len(e.get('removed', []))} certificate(s), backup ConfigMap kube-system/{e.get('backup', '-')}")
for r in e.get("removed", []):
    print(f"            - {r.get('key')}: {r.get('subject')} ({r.get('reason')})")
print(f"  CSRs      approved {c.get('approved', 0)}, denied {c.get('denied', 0)}, pending {c.get('pending', 0)}")
for r in c.get("recent", []):
    print(f"            - {r.get('name')}: {r.get('decision')} {r.get('reason', '')}")
print(f"  pods      workloads restarted {p.get('restarted', 0)}, pods evicted {p.get('evicted', 0)}, "
      f"namespaces done {p.get('namespacesDone', 0)}/{p.get('namespacesTotal', 0)} in order {', '.join(p.get('done', []))}")
for m in p.get("manual", []):
    print(f"            - needs a manual restart (ownerless, kept): {m}")
for s in p.get("stuck", []):
    print(f"            - did not become ready in time: {s}")
cond = {x["type"]: x for x in st.get("conditions", [])}
s = cond.get("Succeeded", {})
v = cond.get("Verified", {})
print(f"  result    Succeeded={s.get('status')} ({s.get('reason')}): {s.get('message', '')}")
print(f"            Verified={v.get('status')} ({v.get('reason')}): {v.get('message', '')}")
sys.exit(0 if s.get("status") == "True" and v.get("status") == "True" else 1)
EOF
