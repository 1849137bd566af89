"""The Kubernetes client (operator/kube/kube.c, kubeconfig.c) against the HTTPS test responder, driven
through build/tools/kmctl."""

import json
import os
import subprocess

from responder import status

REJECTED = ("credentials rejected \u2014 after a PKI rebuild restart the operator's pod or run "
            "with --kubeconfig")
POD = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p1", "namespace": "ns1"}}


def ok_handler(req):
    return 200, POD


def test_get_with_ca_file_and_token(responder, pki, kubeconfig, kmctl):
    r = responder()
    r.handler = lambda req: ((200, POD) if req.headers.get("Authorization") == "Bearer s3cret"
                             else (401, status(401, "Unauthorized", "Unauthorized")))
    kc = kubeconfig(r.url, ca=pki["ca"], token="s3cret", namespace="ns1")
    res = kmctl("--kubeconfig", kc, "get", "/api/v1/namespaces/ns1/pods/p1")
    assert res.rc == 0, res
    assert res.last == {"ok": True, "result": POD}
    req = r.requests[0]
    assert req.method == "GET" and req.raw_path == "/api/v1/namespaces/ns1/pods/p1"
    assert req.headers["User-Agent"].startswith("kubemend/")
    assert req.headers["Accept"] == "application/json"
    assert "s3cret" not in res.stderr + res.stdout
    cfg = kmctl("--kubeconfig", kc, "config").last["result"]
    assert cfg["namespace"] == "ns1" and cfg["server"] == r.url and cfg["has_ca"]
    assert cfg["insecure"] is False


def test_ca_data_relative_ca_path_and_tls_server_name(responder, pki, kubeconfig, kmctl, tmp_path):
    r = responder()
    r.handler = ok_handler
    assert kmctl("--kubeconfig", kubeconfig(r.url, ca_data=pki["ca"]), "get", "/api/v1/x").rc == 0
    # a relative certificate-authority path is resolved against the kubeconfig's directory
    (tmp_path / "ca-copy.crt").write_bytes(open(pki["ca"], "rb").read())
    assert kmctl("--kubeconfig", kubeconfig(r.url, ca="ca-copy.crt"), "get", "/api/v1/x").rc == 0
    # tls-server-name: the certificate names kubernetes.test, the URL names the IP
    kc = kubeconfig(r.url, ca=pki["ca"], tls_server_name="kubernetes.test")
    res = kmctl("--kubeconfig", kc, "get", "/api/v1/x")
    assert res.rc == 0, res
    assert r.requests[-1].headers["Host"].startswith("kubernetes.test")
    kc = kubeconfig(r.url, ca=pki["ca"], tls_server_name="wrong.test")
    assert kmctl("--kubeconfig", kc, "get", "/api/v1/x").last["error"] == "transport error"


def test_wrong_ca_is_a_transport_error_without_retry_storm(responder, pki, kubeconfig, kmctl):
    r = responder()
    r.handler = ok_handler
    res = kmctl("--kubeconfig", kubeconfig(r.url, ca=pki["other_ca"], token="t"), "get", "/api/v1/x")
    assert res.rc == 1
    assert res.last["ok"] is False and res.last["error"] == "transport error"
    assert res.last["http_code"] == 0
    assert "certificate" in res.last["message"].lower()
    assert r.requests == []
    assert r.connections == 1  # TLS verification failures are not retried


def test_insecure_skip_tls_verify_only_when_set(responder, kubeconfig, kmctl):
    r = responder()
    r.handler = ok_handler
    res = kmctl("--kubeconfig", kubeconfig(r.url, insecure=True), "get", "/api/v1/x")
    assert res.rc == 0, res
    assert kmctl("--kubeconfig", kubeconfig(r.url, insecure=True), "config").last["result"][
        "insecure"] is True
    # neither CA nor insecure: the system trust store does not know the test CA
    res = kmctl("--kubeconfig", kubeconfig(r.url), "get", "/api/v1/x")
    assert res.last["error"] == "transport error", res
    res = kmctl("--kubeconfig", kubeconfig(r.url, insecure=False), "get", "/api/v1/x")
    assert res.last["error"] == "transport error", res


def test_client_certificate_auth(responder, pki, kubeconfig, kmctl):
    r = responder(client_ca=pki["client_ca"])
    r.handler = ok_handler
    for data in (False, True):
        kc = kubeconfig(r.url, ca=pki["ca"], client_cert=pki["client_crt"],
                        client_key=pki["client_key"], client_data=data)
        res = kmctl("--kubeconfig", kc, "get", "/api/v1/namespaces/ns1/pods/p1")
        assert res.rc == 0, res
        assert "PRIVATE KEY" not in res.stdout + res.stderr
    assert len(r.requests) == 2
    before = r.connections
    res = kmctl("--max-retries", "2", "--backoff", "0.01", "--kubeconfig",
                kubeconfig(r.url, ca=pki["ca"]), "get", "/api/v1/x")
    assert res.rc == 1 and res.last["error"] == "transport error", res
    assert len(r.requests) == 2
    # usually the "certificate required" TLS alert (not retried); when the server's close wins
    # the race it looks like a reset connection, which is retried a bounded number of times
    assert 1 <= r.connections - before <= 3


def test_bearer_token_file_reload(responder, pki, kubeconfig, tools_dir, tmp_path):
    tok = tmp_path / "token"
    tok.write_text("token-one\n")
    r = responder()
    r.handler = lambda req: ((200, POD) if req.headers.get("Authorization")
                             == "Bearer " + tok.read_text().strip()
                             else (401, status(401, "Unauthorized", "Unauthorized")))
    kc = kubeconfig(r.url, ca=pki["ca"], token_file=str(tok))
    # the file is stat'ed at most once per recheck interval (default 1 s; an hour here), so
    # after the rewrite the old token is sent, gets 401, and the 401 forces a re-read and one
    # immediate retry
    res = _script_with_rewrite(tools_dir, kc, tok, "token-two", "--token-recheck", "3600")
    assert [line["ok"] for line in res.lines] == [True, True], res
    auths = [q.headers.get("Authorization") for q in r.requests]
    assert auths == ["Bearer token-one", "Bearer token-one", "Bearer token-two"]
    # with recheck 0 the new token is picked up on the next request without a 401
    n = len(r.requests)
    res = _script_with_rewrite(tools_dir, kc, tok, "token-four", "--token-recheck", "0")
    assert [line["ok"] for line in res.lines] == [True, True], res
    codes = [q.headers.get("Authorization") for q in r.requests[n:]]
    assert codes == ["Bearer token-two", "Bearer token-four"]
    assert "token-" not in res.stderr


def _script_with_rewrite(tools_dir, kc, tok, new, *extra):
    """Runs kmctl script: one get, then rewrites the token file, then a second get (one client
    for both requests)."""
    exe = os.path.join(tools_dir, "kmctl")
    p = subprocess.Popen([exe, *extra, "--kubeconfig", kc, "script"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdin.write("get /api/v1/first\n")
    p.stdin.flush()
    first = p.stdout.readline()
    tok.write_text(new + "\n")
    p.stdin.write("get /api/v1/second\n")
    p.stdin.close()
    rest = p.stdout.read()
    err = p.stderr.read()
    p.wait(timeout=60)

    class R:
        pass
    res = R()
    res.lines = [json.loads(x) for x in (first + rest).splitlines() if x.strip()]
    res.stderr = err
    res.rc = p.returncode
    return res


def test_429_with_retry_after_then_success(responder, pki, kubeconfig, kmctl):
    r = responder()
    calls = []

    def h(req):
        calls.append(req)
        if len(calls) == 1:
            return 429, status(429, "TooManyRequests", "slow down"), {"Retry-After": "1"}
        return 201, POD

    r.handler = h
    kc = kubeconfig(r.url, ca=pki["ca"], token="t")
    res = kmctl("--kubeconfig", kc, "create", "/api/v1/namespaces/ns1/pods", json.dumps(POD))
    assert res.rc == 0, res
    assert len(calls) == 2  # POST is retried after 429: the server did not apply it
    assert calls[1].json() == POD


def test_500_then_success_for_get(responder, pki, kubeconfig, kmctl):
    r = responder()
    calls = []

    def h(req):
        calls.append(req)
        if len(calls) < 3:
            return 500, status(500, "InternalError", "etcd hiccup")
        return 200, POD

    r.handler = h
    kc = kubeconfig(r.url, ca=pki["ca"], token="t")
    res = kmctl("--backoff", "0.05", "--kubeconfig", kc, "get", "/api/v1/namespaces/ns1/pods/p1")
    assert res.rc == 0, res
    assert len(calls) == 3


def test_retries_are_capped(responder, pki, kubeconfig, kmctl):
    r = responder()
    r.handler = lambda req: (503, "<html>upstream down</html>")
    kc = kubeconfig(r.url, ca=pki["ca"])
    res = kmctl("--backoff", "0.01", "--max-retries", "2", "--kubeconfig", kc, "get", "/api/v1/x")
    assert res.rc == 1
    assert res.last["http_code"] == 503 and res.last["reason"] == "ServiceUnavailable"
    assert "upstream down" in res.last["message"]
    assert len(r.requests) == 3


def test_post_and_patch_not_retried_after_500(responder, pki, kubeconfig, kmctl):
    r = responder()
    r.handler = lambda req: (500, status(500, "InternalError", "boom"))
    kc = kubeconfig(r.url, ca=pki["ca"])
    res = kmctl("--backoff", "0.01", "--kubeconfig", kc, "create", "/api/v1/namespaces/a/pods",
                json.dumps(POD))
    assert res.rc == 1 and res.last["http_code"] == 500 and res.last["message"] == "boom"
    assert len(r.requests) == 1
    res = kmctl("--backoff", "0.01", "--kubeconfig", kc, "patch", "/api/v1/namespaces/a/pods/p",
                "merge", '{"metadata":{"labels":{"a":"b"}}}')
    assert res.rc == 1
    assert len(r.requests) == 2


def test_410_on_continue_restarts_the_list_once(responder, pki, kubeconfig, kmctl):
    r = responder()
    expired = []

    def item(n):
        return {"metadata": {"name": n}}

    def h(req):
        assert req.query["limit"] == "2"
        cont = req.query.get("continue")
        if cont is None:
            return 200, {"kind": "SecretList", "metadata": {"resourceVersion": "10",
                                                            "continue": "c1",
                                                            "remainingItemCount": 2},
                         "items": [item("a"), item("b")]}
        if cont == "c1" and not expired:
            expired.append(1)
            return 410, status(410, "Expired", "The provided continue parameter is too old",
                               **{"continue": "inconsistent"})
        return 200, {"kind": "SecretList", "metadata": {"resourceVersion": "12"},
                     "items": [item("c"), item("d")]}

    r.handler = h
    kc = kubeconfig(r.url, ca=pki["ca"])
    res = kmctl("--kubeconfig", kc, "list", "/api/v1/namespaces/kube-system/secrets",
                '{"limit":2,"label":"app in (a,b)"}')
    assert res.rc == 0, res
    pages = res.lines[:-1]
    assert [p["names"] for p in pages] == [["a", "b"], ["a", "b"], ["c", "d"]]
    assert [p["restarted"] for p in pages] == [False, True, False]
    assert pages[0]["remaining"] == 2 and pages[2]["remaining"] == -1
    assert res.last["result"] == {"pages": 3, "items": 6, "rv": "12"}
    assert res.stderr.count("restarting the list") == 1
    assert all(q.query["labelSelector"] == "app in (a,b)" for q in r.requests)
    assert "labelSelector=app%20in%20%28a%2Cb%29" in r.requests[0].raw_path
    assert "continue" not in r.requests[2].query  # the restart starts from the beginning


def test_third_410_is_returned(responder, pki, kubeconfig, kmctl):
    """The restarted list expires too: one unpaginated list (client-go's fallback); a server that
    pages even that and expires it again ends the list with the 410."""
    r = responder()

    def h(req):
        if "continue" not in req.query:
            return 200, {"metadata": {"resourceVersion": "1", "continue": "c"}, "items": []}
        return 410, status(410, "Expired", "too old")

    r.handler = h
    res = kmctl("--kubeconfig", kubeconfig(r.url, ca=pki["ca"]), "list", "/api/v1/secrets")
    assert res.rc == 1 and res.last["http_code"] == 410 and res.last["reason"] == "Expired"
    assert len(r.requests) == 6
    assert "limit" not in r.requests[4].query and "continue" not in r.requests[4].query


def test_second_410_lists_without_pages(responder, pki, kubeconfig, kmctl):
    r = responder()

    def h(req):
        if "continue" in req.query:
            return 410, status(410, "Expired", "too old")
        if "limit" in req.query:
            return 200, {"metadata": {"resourceVersion": "1", "continue": "c"}, "items": []}
        return 200, {"metadata": {"resourceVersion": "2"}, "items": [{"metadata": {"name": "a"}}]}

    r.handler = h
    res = kmctl("--kubeconfig", kubeconfig(r.url, ca=pki["ca"]), "list", "/api/v1/secrets")
    assert res.rc == 0, res
    assert len(r.requests) == 5


def test_401_reported_once_with_the_exact_message(responder, pki, kubeconfig, kmctl):
    r = responder()
    r.handler = lambda req: (401, status(401, "Unauthorized", "Unauthorized"))
    kc = kubeconfig(r.url, ca=pki["ca"], token="old-token")
    res = kmctl("--kubeconfig", kc, "script",
                stdin="get /api/v1/a\nget /api/v1/b\nlist /api/v1/secrets\n")
    assert len(res.lines) == 3, res
    for line in res.lines:
        assert line["ok"] is False and line["http_code"] == 401
        assert line["reason"] == "Unauthorized"
        assert line["message"] == REJECTED
    assert res.stderr.count(REJECTED) == 1
    assert len(r.requests) == 3  # never retried
    assert "old-token" not in res.stderr + res.stdout


def test_keepalive_connection_reuse(responder, pki, kubeconfig, kmctl):
    r = responder()
    r.handler = ok_handler
    kc = kubeconfig(r.url, ca=pki["ca"], token="t")
    res = kmctl("--kubeconfig", kc, "script", stdin="get /api/v1/a\n" * 5)
    assert [line["ok"] for line in res.lines] == [True] * 5, res
    assert len(r.requests) == 5
    assert r.connections == 1


def test_status_errors_are_structured(responder, pki, kubeconfig, kmctl):
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "ConfigMap \"FX_Bad_Name\" is invalid", "reason": "Invalid",
            "details": {"name": "FX_Bad_Name", "kind": "ConfigMap",
                        "causes": [{"reason": "FieldValueInvalid", "message": "Invalid value",
                                    "field": "metadata.name"}]}, "code": 422}
    r = responder()
    r.handler = lambda req: (422, body)
    kc = kubeconfig(r.url, ca=pki["ca"])
    res = kmctl("--kubeconfig", kc, "create", "/api/v1/namespaces/a/configmaps", '{"a":1}')
    assert res.last["error"] == "API error" and res.last["http_code"] == 422
    assert res.last["reason"] == "Invalid"
    assert res.last["details"] == \
        "kind=ConfigMap name=FX_Bad_Name causes=[metadata.name: Invalid value]"
    assert r.requests[0].headers["Content-Type"] == "application/json"


def test_write_verbs_bodies_and_content_types(responder, pki, kubeconfig, kmctl):
    r = responder()
    r.handler = lambda req: (200, {"kind": "Status", "status": "Success"})
    kc = kubeconfig(r.url, ca=pki["ca"])
    p = "/apis/apps/v1/namespaces/a/deployments/d"
    assert kmctl("--kubeconfig", kc, "update", p, '{"kind":"Deployment"}').rc == 0
    for t, ct in (("merge", "application/merge-patch+json"),
                  ("json", "application/json-patch+json"),
                  ("strategic", "application/strategic-merge-patch+json")):
        assert kmctl("--kubeconfig", kc, "patch", p, t, '{"x":1}').rc == 0
        assert r.requests[-1].headers["Content-Type"] == ct
        assert r.requests[-1].method == "PATCH" and r.requests[-1].json() == {"x": 1}
    assert kmctl("--kubeconfig", kc, "delete", p + "/x",
                 '{"uid":"u1","rv":"7","propagation":"Foreground","grace":0,"dryRun":true}').rc == 0
    d = r.requests[-1]
    assert d.method == "DELETE"
    assert d.json() == {"apiVersion": "v1", "kind": "DeleteOptions",
                        "preconditions": {"uid": "u1", "resourceVersion": "7"},
                        "propagationPolicy": "Foreground", "gracePeriodSeconds": 0,
                        "dryRun": ["All"]}
    assert r.requests[0].method == "PUT" and r.requests[0].json() == {"kind": "Deployment"}


def test_stream_forwards_the_body(responder, pki, kubeconfig, kmctl):
    lines = b'{"type":"ADDED","object":{}}\n{"type":"DELETED","object":{}}\n'
    r = responder()
    r.handler = lambda req: (200, lines, {"Content-Type": "application/json"})
    kc = kubeconfig(r.url, ca=pki["ca"])
    res = kmctl("--kubeconfig", kc, "stream", "/api/v1/secrets?watch=1", "5000")
    assert res.rc == 0, res
    assert res.stdout.startswith(lines.decode())
    r.handler = lambda req: (403, status(403, "Forbidden", "no"))
    res = kmctl("--kubeconfig", kc, "stream", "/api/v1/secrets?watch=1")
    assert res.last["http_code"] == 403 and res.last["reason"] == "Forbidden"


def test_exec_user_is_unsupported(pki, kubeconfig, kmctl):
    kc = kubeconfig("https://127.0.0.1:1", ca=pki["ca"],
                    user_extra={"exec": {"command": "aws", "apiVersion": "x"}})
    res = kmctl("--kubeconfig", kc, "config")
    assert res.rc == 1 and res.last["error"] == "not supported"
    assert kc in res.last["message"] and "users[test].user.exec" in res.last["message"]


def test_in_cluster_config(responder, pki, kmctl, tmp_path):
    r = responder()
    r.handler = lambda req: ((200, POD) if req.headers.get("Authorization") == "Bearer sa-token"
                             else (401, status(401, "Unauthorized", "Unauthorized")))
    d = tmp_path / "sa"
    d.mkdir()
    (d / "token").write_text("sa-token")
    (d / "ca.crt").write_bytes(open(pki["ca"], "rb").read())
    (d / "namespace").write_text("kube-system\n")
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(r.port)}
    res = kmctl("--incluster-dir", d, "config", env=env)
    assert res.last["result"]["server"] == r.url
    assert res.last["result"]["namespace"] == "kube-system"
    assert res.last["result"]["source"] == "in-cluster"
    res = kmctl("--incluster-dir", d, "get", "/api/v1/x", env=env)
    assert res.rc == 0, res
