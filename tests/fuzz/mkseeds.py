#!/usr/bin/python3
"""mkseeds.py — (re)writes the seed corpus tests/fuzz/corpus/<target>/seed-* from the recorded
fixtures (tests/fixtures), the CSR fixtures quoted in tests/unit/test_csrcheck.c and the
manifests (crds/, deploy/).  Run from anywhere: /usr/bin/python3 tests/fuzz/mkseeds.py
Inputs libFuzzer found and `make fuzz` merged (tests/fuzz/README.md) are kept beside them under
other names and are not touched."""
import base64
import glob
import json
import os
import re
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
FX = os.path.join(ROOT, "tests", "fixtures", "kube-apiserver-1.19")


def fx(name, mode="rb"):
    with open(os.path.join(FX, name), mode) as f:
        return f.read()


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for old in glob.glob(os.path.join(d, "seed-*")):
        os.remove(old)
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())


def nul(*parts):
    return b"\0".join(p if isinstance(p, bytes) else p.encode() for p in parts)


NDJSON = sorted(os.path.basename(p) for p in glob.glob(os.path.join(FX, "*.ndjson")))
configmap = json.loads(fx("get-configmap-extension-apiserver-authentication.json"))
configmap_after = json.loads(fx("get-configmap-extension-apiserver-authentication-after-put.json"))
CA_BUNDLE = configmap["data"]["client-ca-file"]
CA_AFTER = configmap_after["data"]["client-ca-file"]
secret_raw = fx("get-secret-fx-sa-token.json")
TOKEN = base64.b64decode(json.loads(secret_raw)["data"]["token"])
JWKS = fx("oidc-jwks.json")

# watch lines: header bytes (max_line, mode; chunk, deliver) + a recorded stream
lines = {}
for i, name in enumerate(NDJSON):
    body = fx(name)
    lines[name] = bytes([0x80, 7 + i]) + body           # skip mode, 1 MiB lines
    lines[name + "-small"] = bytes([0x80 | 40, 0x80 | 3]) + body[:400]
    lines[name + "-abort"] = bytes([0, 16]) + body
lines["crlf"] = bytes([0x80 | 8, 2]) + b"a\r\nbb\n\n\r\nlong line here\nlast"
write("fuzz_lines", lines)

# watch events: every line of every stream
events = {}
for name in NDJSON:
    for j, line in enumerate(fx(name).splitlines()):
        if line.strip():
            events["%s-%d" % (name, j)] = line
write("fuzz_event", events)

# kubeconfig
b64 = lambda s: base64.b64encode(s.encode() if isinstance(s, str) else s).decode()
KC = """apiVersion: v1
kind: Config
current-context: admin@fx
clusters:
- name: fx
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority-data: %s
    tls-server-name: kubernetes
contexts:
- name: admin@fx
  context: {cluster: fx, user: admin, namespace: kube-system}
- name: token@fx
  context: {cluster: fx, user: tok}
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
- name: tok
  user:
    token: not-a-real-token
""" % (b64(CA_BUNDLE), b64(CA_AFTER), b64("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
KC_EXEC = """apiVersion: v1
clusters:
- cluster: {server: "https://[::1]:6443", insecure-skip-tls-verify: true}
  name: c
contexts:
- context: {cluster: c, user: u}
  name: x
current-context: x
users:
- name: u
  user:
    exec: {command: aws, apiVersion: client.authentication.k8s.io/v1}
"""
KC_FILES = """clusters:
- name: c
  cluster: {server: "https://h:1", certificate-authority: ca.crt}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
users:
- name: u
  user: {tokenFile: token, client-certificate: /nonexistent/c.crt}
"""
write("fuzz_kubeconfig", {
    "admin": KC, "token-context": nul(KC, "token@fx"), "missing-context": nul(KC, "nope"),
    "exec": KC_EXEC, "files": KC_FILES, "json": json.dumps({"clusters": [], "users": []}),
})

# YAML -> JSON: manifests, the kubeconfigs, JSON fixtures, anchors
yaml = {}
for p in sorted(glob.glob(os.path.join(ROOT, "crds", "*.yaml")) +
                glob.glob(os.path.join(ROOT, "deploy", "*.yaml"))):
    with open(p, "rb") as f:
        yaml[os.path.basename(os.path.dirname(p)) + "-" + os.path.basename(p)] = f.read()
yaml["kubeconfig"] = KC
yaml["tokenreview"] = fx("tokenreview-valid.json")
yaml["anchors"] = "a: &x {b: [1, 2.5, -3e2, 0x1f, .inf, ~, true, 'q', \"d\\u00e9\"]}\nc: *x\nd: |\n  lit\n  block\n<<: *x\n"
yaml["flow"] = "[{a: 1}, [2, [3]], null, \"x\": y]"
write("fuzz_yaml", yaml)

# base64: flags byte + text
pem_body = "".join(CA_BUNDLE.split("-----")[2].split())
write("fuzz_base64", {
    "std": b"\0" + json.loads(secret_raw)["data"]["token"].encode(),
    "url-jwt-header": b"\1" + TOKEN.split(b".")[0],
    "url-jwt-sig": b"\1" + TOKEN.split(b".")[2],
    "pem-wrapped": b"\2" + CA_BUNDLE.split("-----")[2].encode(),
    "pem-joined": b"\0" + pem_body.encode(),
    "pad1": b"\0QUI=", "pad2": b"\3Q Q\n==",
})

# JWT: JWKS NUL token NUL Secret NUL TokenReview
jwt = {}
reviews = sorted(os.path.basename(p) for p in glob.glob(os.path.join(FX, "tokenreview-*.json")))
for r in reviews:
    jwt["fx-" + r] = nul(JWKS, TOKEN, secret_raw, fx(r))
for s in ("get-secret-app1-worker-token-after-rotation.json", "get-sa-token-secret-recreated.json",
          "patch-sa-token-secret-remove-token.json"):
    tok = json.loads(fx(s)).get("data", {}).get("token")
    jwt["secret-" + s] = nul(JWKS, base64.b64decode(tok) if tok else b"", fx(s), b"")
jwt["none-alg"] = nul(JWKS, b64(b'{"alg":"none"}').rstrip("=") + "." + b64(b"{}").rstrip("=") + ".")
write("fuzz_jwt", jwt)

# PEM: bundle NUL current NUL pinned fingerprint NUL now
write("fuzz_pem", {
    "rebuild": nul(CA_BUNDLE, CA_AFTER, "", "1795600000"),
    "no-current": nul(CA_BUNDLE, "", "", "1795600000"),
    "pinned": nul(CA_BUNDLE, "", "AB:" * 31 + "AB", "1795600000"),
    "expired-all": nul(CA_BUNDLE, "", "", "4102444800"),
    "requestheader": nul(configmap["data"]["requestheader-client-ca-file"], CA_AFTER),
    "empty": b"",
})

# CSR: the verbatim fixtures quoted in tests/unit/test_csrcheck.c
with open(os.path.join(ROOT, "tests", "unit", "test_csrcheck.c")) as f:
    src = f.read()


def c_literal(name):
    body = re.search(r"static const char %s\[\] =(.*?);\n" % name, src, re.S).group(1)
    parts = re.findall(r'"((?:[^"\\]|\\.)*)"', body)
    return "".join(p.encode().decode("unicode_escape") for p in parts)


node = c_literal("FX_NODE1")
write("fuzz_csr", {
    "serving": nul(c_literal("FX_CSR_SERVING"), node),
    "serving-no-node": c_literal("FX_CSR_SERVING"),
    "client": nul(c_literal("FX_CSR_CLIENT"), node),
    "approved": nul(c_literal("FX_CSR_APPROVED"), node),
})

# API errors: 2 bytes of HTTP code + body NUL Retry-After
code = lambda c: struct.pack(">H", c - 100)
status410 = json.dumps(json.loads(fx("watch-secrets-rv1-after-compaction.ndjson"))["object"])
write("fuzz_apierr", {
    "410": code(410) + status410.encode(),
    "429": code(429) + nul(json.dumps({"kind": "Status", "reason": "TooManyRequests", "code": 429,
                                       "details": {"retryAfterSeconds": 3, "name": "x", "causes": [
                                           {"field": "f", "message": "m", "reason": "r"}]}}), "5"),
    "503-html": code(503) + nul("<html><body>Service Unavailable</body></html>",
                                "Wed, 21 Oct 2037 07:28:00 GMT"),
    "empty": code(500),
})

# ClusterRecovery objects: the example (as JSON) and a few spec variants, with --steps lists
import yaml as pyyaml  # noqa: E402  (PyYAML: python3-yaml, a test dependency)
with open(os.path.join(ROOT, "crds", "example-recovery.yaml")) as f:
    example = pyyaml.safe_load(f)
bare = {"apiVersion": example["apiVersion"], "kind": example["kind"], "metadata": {"name": "x"}}
write("fuzz_spec", {
    "example": nul(json.dumps(example), "tokens,extauth,csr,pods"),
    "bare": nul(json.dumps(bare), "csr"),
    "no-spec-steps": nul(json.dumps(dict(bare, spec={})), "tokens,,pods"),
    "example-compact": json.dumps(example, separators=(",", ":")),
})

write("fuzz_http", {"port": ":8080", "v4": "127.0.0.1:9090", "v6": "[::1]:8081", "zero": "0.0.0.0:0",
                    "bad": "[::1:80"})
