"""HTTP/2: the client negotiates h2 (ALPN) when the server offers it, and reuses one connection
(multiplexed streams) for successive requests.  The server is nghttpd (Debian's nghttp2-server,
installed by tests/deps.sh), a real HTTP/2 implementation serving files over TLS on 127.0.0.1."""

import os
import re
import shutil
import socket
import subprocess
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http2_negotiated_and_one_connection_reused(tmp_path, pki, kubeconfig, kmctl):
    nghttpd = shutil.which("nghttpd") or "/usr/sbin/nghttpd"
    assert os.path.exists(nghttpd), "nghttpd missing: tests/deps.sh installs nghttp2-server"
    docs = tmp_path / "docs"
    obj = docs / "api" / "v1" / "namespaces" / "default" / "configmaps"
    obj.mkdir(parents=True)
    (obj / "cm").write_text('{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cm"}}\n')
    port = free_port()
    log = open(tmp_path / "nghttpd.log", "w")
    srv = subprocess.Popen([nghttpd, "-a", "127.0.0.1", "-d", str(docs), "-v", str(port),
                            pki["server_key"], pki["server_crt"]], stdout=log, stderr=subprocess.STDOUT)
    try:
        for _ in range(100):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        kc = kubeconfig("https://127.0.0.1:%d" % port, ca=pki["ca"], token="t")
        res = kmctl("--kubeconfig", kc, "script",
                    stdin="get /api/v1/namespaces/default/configmaps/cm\n" * 3)
        assert [line["ok"] for line in res.lines] == [True] * 3, res
        time.sleep(0.3)
        text = open(tmp_path / "nghttpd.log").read()
        heads = re.findall(r"\[id=(\d+)\].*recv HEADERS frame <.*stream_id=(\d+)>", text)
        assert len(heads) == 3, text[-2000:]
        assert len({c for c, _ in heads}) == 1, "one connection for all requests"
        assert [int(s) for _, s in heads] == [1, 3, 5], "successive streams of one HTTP/2 connection"
    finally:
        srv.terminate()
        srv.wait(timeout=10)
        log.close()
