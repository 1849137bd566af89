"""SimProcess: start the simulator as a subprocess for tests (used by every pytest suite of the project)."""

import base64
import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

APISIM_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
KUBECTL = "/usr/bin/kubectl"


class SimProcess:
    """Context manager: `with SimProcess(scenario="seed") as sim: sim.kubectl("get", "pods", "-A")`."""

    def __init__(self, scenario=None, extra_args=(), startup_timeout=120, env=None, workdir=None):
        self.scenario = scenario
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.env = env
        self._own_tmp = workdir is None
        self.tmp = workdir or tempfile.mkdtemp(prefix="apisim-test-")
        self.kubeconfig = os.path.join(self.tmp, "kubeconfig")
        self.ca_file = os.path.join(self.tmp, "kubeconfig-ca.crt")
        self.admin_cert = os.path.join(self.tmp, "kubeconfig-admin.crt")
        self.admin_key = os.path.join(self.tmp, "kubeconfig-admin.key")
        self.url = None
        self.port = None
        self.proc = None
        self._ctx = None
        self._stderr_lines = []

    # ------------------------------------------------------------ lifecycle
    def start(self):
        args = [PYTHON, "-m", "apisim", "--kubeconfig-out", self.kubeconfig, "--port", "0",
                "--workdir", os.path.join(self.tmp, "work")]
        if self.scenario:
            args += ["--scenario", self.scenario]
        args += self.extra_args
        env = dict(os.environ)
        env["PYTHONPATH"] = APISIM_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.update(self.env or {})
        self.proc = subprocess.Popen(args, cwd=APISIM_DIR, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        deadline = time.time() + self.startup_timeout
        line = ""
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("READY "):
                self.url = line.split()[1].strip()
                self.port = int(self.url.rsplit(":", 1)[1])
                break
        if not self.url:
            self.stop()
            raise RuntimeError("apisim did not become ready: %s" % "".join(self._stderr_lines[-30:]))
        threading.Thread(target=self._drain_stdout, daemon=True).start()
        self._ctx = ssl.create_default_context(cafile=self.ca_file)
        self._ctx.load_cert_chain(self.admin_cert, self.admin_key)
        return self

    def _drain_stderr(self):
        for line in self.proc.stderr:
            self._stderr_lines.append(line)
            if len(self._stderr_lines) > 2000:
                del self._stderr_lines[:1000]

    def _drain_stdout(self):
        for _ in self.proc.stdout:
            pass

    @property
    def stderr(self):
        return "".join(self._stderr_lines)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ------------------------------------------------------------ clients
    def ssl_context(self, client_cert=True):
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if client_cert:
            ctx.load_cert_chain(self.admin_cert, self.admin_key)
        return ctx

    def request(self, method, path, body=None, headers=None, token=None, cert=True, raw=False, timeout=30):
        """(status, parsed JSON or text). body: dict/list (JSON-encoded) or bytes/str."""
        ctx = self._ctx if (cert and token is None) else self.ssl_context(client_cert=False)
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=timeout)
        hdrs = {"Accept": "application/json", "User-Agent": "apisim-testing/1.0"}
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            if isinstance(body, (dict, list)):
                data = json.dumps(body).encode()
                hdrs["Content-Type"] = "application/json"
            else:
                data = body.encode() if isinstance(body, str) else body
        hdrs.update(headers or {})
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", errors="replace")
            self.last_headers = dict(resp.getheaders())
            if raw:
                return resp.status, text
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text
        finally:
            conn.close()

    def sim(self, method, path, body=None):
        if not path.startswith("/_sim"):
            path = "/_sim/" + path.lstrip("/")
        return self.request(method, path, body)

    def kubectl(self, *args, check=True, input=None, timeout=60, kubeconfig=None):
        cmd = [KUBECTL, "--kubeconfig", kubeconfig or self.kubeconfig] + list(args)
        cp = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
        if check and cp.returncode != 0:
            raise AssertionError("kubectl %s failed (%d): %s%s" % (" ".join(args), cp.returncode, cp.stdout,
                                                                  cp.stderr))
        return cp

    def token_kubeconfig(self, token, path=None):
        """Write a kubeconfig using a bearer token (CA from the admin kubeconfig); returns its path."""
        path = path or os.path.join(self.tmp, "kubeconfig-token-%d" % int(time.time() * 1e6))
        with open(self.ca_file, "rb") as f:
            ca = base64.b64encode(f.read()).decode()
        with open(path, "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: sim\n  cluster:\n    server: %s\n"
                    "    certificate-authority-data: %s\nusers:\n- name: u\n  user:\n    token: %s\n"
                    "contexts:\n- name: c\n  context:\n    cluster: sim\n    user: u\ncurrent-context: c\n"
                    % (self.url, ca, token))
        return path
