"""PKI for the simulator: cluster CA, certificates and service-account keys.

Key and certificate generation use the `openssl` CLI; JWT signing and
verification (RS256 / ES256) call libcrypto.so.3 through ctypes so that tens of
thousands of tokens can be minted quickly.  Python stdlib only.
"""

import base64
import ctypes
import ctypes.util
import hashlib
import json
import os
import secrets
import subprocess
import threading
import time

ISSUER = "https://kubernetes.default.svc.cluster.local"
LEGACY_ISSUER = "kubernetes/serviceaccount"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text):
    if isinstance(text, str):
        text = text.encode("ascii")
    return base64.urlsafe_b64decode(text + b"=" * (-len(text) % 4))


def _run(args, data=None):
    proc = subprocess.run(args, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise RuntimeError("openssl failed: %s: %s" % (" ".join(args[:3]), proc.stderr.decode(errors="replace")[-400:]))
    return proc.stdout


# --------------------------------------------------------------------------- libcrypto

class _Crypto:
    def __init__(self):
        path = "libcrypto.so.3"
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            lib = ctypes.CDLL(ctypes.util.find_library("crypto"))
        self.lib = lib
        vp = ctypes.c_void_p
        lib.BIO_new_mem_buf.restype = vp
        lib.BIO_new_mem_buf.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.BIO_free.argtypes = [vp]
        lib.PEM_read_bio_PrivateKey.restype = vp
        lib.PEM_read_bio_PrivateKey.argtypes = [vp, vp, vp, vp]
        lib.PEM_read_bio_PUBKEY.restype = vp
        lib.PEM_read_bio_PUBKEY.argtypes = [vp, vp, vp, vp]
        lib.EVP_PKEY_free.argtypes = [vp]
        lib.EVP_MD_CTX_new.restype = vp
        lib.EVP_MD_CTX_free.argtypes = [vp]
        lib.EVP_sha256.restype = vp
        lib.EVP_DigestSignInit.argtypes = [vp, vp, vp, vp, vp]
        lib.EVP_DigestSign.argtypes = [vp, ctypes.c_char_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p,
                                       ctypes.c_size_t]
        lib.EVP_DigestVerifyInit.argtypes = [vp, vp, vp, vp, vp]
        lib.EVP_DigestVerify.argtypes = [vp, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]

    def load_private(self, pem):
        bio = self.lib.BIO_new_mem_buf(pem, len(pem))
        try:
            key = self.lib.PEM_read_bio_PrivateKey(bio, None, None, None)
        finally:
            self.lib.BIO_free(bio)
        if not key:
            raise RuntimeError("cannot load private key")
        return key

    def load_public(self, pem):
        bio = self.lib.BIO_new_mem_buf(pem, len(pem))
        try:
            key = self.lib.PEM_read_bio_PUBKEY(bio, None, None, None)
        finally:
            self.lib.BIO_free(bio)
        if not key:
            raise RuntimeError("cannot load public key")
        return key

    def sign(self, pkey, data):
        ctx = self.lib.EVP_MD_CTX_new()
        try:
            if self.lib.EVP_DigestSignInit(ctx, None, self.lib.EVP_sha256(), None, pkey) != 1:
                raise RuntimeError("EVP_DigestSignInit failed")
            size = ctypes.c_size_t(0)
            if self.lib.EVP_DigestSign(ctx, None, ctypes.byref(size), data, len(data)) != 1:
                raise RuntimeError("EVP_DigestSign (size) failed")
            buf = ctypes.create_string_buffer(size.value)
            if self.lib.EVP_DigestSign(ctx, buf, ctypes.byref(size), data, len(data)) != 1:
                raise RuntimeError("EVP_DigestSign failed")
            return buf.raw[: size.value]
        finally:
            self.lib.EVP_MD_CTX_free(ctx)

    def verify(self, pkey, data, sig):
        ctx = self.lib.EVP_MD_CTX_new()
        try:
            if self.lib.EVP_DigestVerifyInit(ctx, None, self.lib.EVP_sha256(), None, pkey) != 1:
                return False
            return self.lib.EVP_DigestVerify(ctx, sig, len(sig), data, len(data)) == 1
        finally:
            self.lib.EVP_MD_CTX_free(ctx)


_CRYPTO = None
_CRYPTO_LOCK = threading.Lock()


def crypto():
    global _CRYPTO
    with _CRYPTO_LOCK:
        if _CRYPTO is None:
            _CRYPTO = _Crypto()
        return _CRYPTO


# --------------------------------------------------------------------------- tiny DER helpers

def _der_read(buf, pos):
    tag = buf[pos]
    pos += 1
    length = buf[pos]
    pos += 1
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    return tag, buf[pos:pos + length], pos + length


def _der_int(value):
    raw = value.lstrip(b"\x00") or b"\x00"
    if raw[0] & 0x80:
        raw = b"\x00" + raw
    return b"\x02" + _der_len(len(raw)) + raw


def _der_len(n):
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _ecdsa_der_to_raw(der, size=32):
    _, body, _ = _der_read(der, 0)
    _, r, pos = _der_read(body, 0)
    _, s, _ = _der_read(body, pos)
    return int.from_bytes(r, "big").to_bytes(size, "big") + int.from_bytes(s, "big").to_bytes(size, "big")


def _ecdsa_raw_to_der(raw):
    half = len(raw) // 2
    body = _der_int(raw[:half]) + _der_int(raw[half:])
    return b"\x30" + _der_len(len(body)) + body


# --------------------------------------------------------------------------- keys

class SAKey:
    """A service-account signing key (RSA 2048 -> RS256, EC P-256 -> ES256)."""

    def __init__(self, key_pem, key_type):
        self.key_pem = key_pem if isinstance(key_pem, bytes) else key_pem.encode()
        self.key_type = key_type
        self.alg = "RS256" if key_type == "rsa" else "ES256"
        self.pub_der = _run(["openssl", "pkey", "-pubout", "-outform", "DER"], self.key_pem)
        self.pub_pem = _run(["openssl", "pkey", "-pubout"], self.key_pem)
        self.kid = b64url(hashlib.sha256(self.pub_der).digest())
        c = crypto()
        self._priv = c.load_private(self.key_pem)
        self._pub = c.load_public(self.pub_pem)

    def jwk(self):
        # SubjectPublicKeyInfo: SEQUENCE { AlgorithmIdentifier, BIT STRING }
        _, spki, _ = _der_read(self.pub_der, 0)
        _, _alg, pos = _der_read(spki, 0)
        _, bits, _ = _der_read(spki, pos)
        bits = bits[1:]  # unused-bits byte
        if self.key_type == "rsa":
            _, seq, _ = _der_read(bits, 0)
            _, n, pos = _der_read(seq, 0)
            _, e, _ = _der_read(seq, pos)
            return {"use": "sig", "kty": "RSA", "kid": self.kid, "alg": "RS256",
                    "n": b64url(n.lstrip(b"\x00")), "e": b64url(e.lstrip(b"\x00"))}
        x, y = bits[1:33], bits[33:65]
        return {"use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
                "x": b64url(x), "y": b64url(y)}

    def sign(self, data):
        sig = crypto().sign(self._priv, data)
        if self.key_type == "ec":
            sig = _ecdsa_der_to_raw(sig)
        return sig

    def verify(self, data, sig):
        if self.key_type == "ec":
            if len(sig) != 64:
                return False
            sig = _ecdsa_raw_to_der(sig)
        return crypto().verify(self._pub, data, sig)


def genkey(key_type):
    """A new private key as PEM bytes: "rsa" (2048 bits) or "ec" (P-256)."""
    if key_type == "rsa":
        return _run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
    return _run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])


def write_private(path, data):
    """Write key material (bytes or str) to path with mode 0600."""
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)


# How long before a simulated cluster's first CA was made: a PKI rebuild's new CA is clearly newer than the
# old one (kubemend derives the rebuild time from the newest CA's notBefore), as on a real cluster.
INITIAL_CA_AGE = 30 * 86400

_CA_CNF = """[ca]
default_ca = d
[d]
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = p
copy_extensions = none
unique_subject = no
[p]
commonName = supplied
[x]
basicConstraints = critical,CA:TRUE
keyUsage = critical,digitalSignature,keyEncipherment,keyCertSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def self_signed_ca(key_path, cn, days=3650, not_before=None):
    """A self-signed CA certificate (PEM bytes) for the key in key_path; notBefore = now, or not_before (epoch
    seconds) when given (`openssl ca -selfsign -startdate`: OpenSSL 3.0's `req -x509` cannot backdate)."""
    ext = ["-addext", "basicConstraints=critical,CA:TRUE",
           "-addext", "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign"]
    if not_before is None:
        return _run(["openssl", "req", "-x509", "-new", "-key", key_path, "-subj", "/CN=%s" % cn, "-days",
                     str(days), "-set_serial", str(secrets.randbits(120))] + ext)
    import tempfile
    import time as _time
    stamp = lambda t: _time.strftime("%Y%m%d%H%M%SZ", _time.gmtime(t))  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="apisim-ca-") as d:
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write(_CA_CNF)
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("%030X\n" % secrets.randbits(119))
        csr = _run(["openssl", "req", "-new", "-key", key_path, "-subj", "/CN=%s" % cn])
        with open(os.path.join(d, "r.csr"), "wb") as f:
            f.write(csr)
        proc = subprocess.run(["openssl", "ca", "-batch", "-notext", "-selfsign", "-config", "ca.cnf", "-keyfile",
                               key_path, "-in", "r.csr", "-startdate", stamp(not_before), "-enddate",
                               stamp(not_before + days * 86400), "-extensions", "x", "-out", "c.pem"],
                              cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            raise RuntimeError("openssl ca failed: %s" % proc.stderr.decode(errors="replace")[-400:])
        with open(os.path.join(d, "c.pem"), "rb") as f:
            return f.read()


def new_ca(cert_path, key_path, cn, days=3650, key_type="rsa", not_before=None):
    """Generate a self-signed CA: key to key_path (0600), certificate to cert_path; returns the certificate PEM.
    not_before: epoch seconds to backdate the certificate to (None = now)."""
    write_private(key_path, genkey(key_type))
    cert = self_signed_ca(key_path, cn, days, not_before)
    with open(cert_path, "wb") as f:
        f.write(cert)
    return cert.decode()


def issue_cert(tmpdir, ca_cert, ca_key, cn, orgs=(), server_sans=None, client=True, days=365, key_type="ec"):
    """A certificate signed by the CA files ca_cert/ca_key; returns (cert_pem, key_pem) as str.
    server_sans: list like ["IP:127.0.0.1", "DNS:localhost"] (adds serverAuth); tmpdir holds scratch files."""
    key = genkey(key_type)
    subj = "".join("/O=%s" % o.replace("/", "\\/") for o in orgs) + "/CN=%s" % cn.replace("/", "\\/")
    # AKID matters: after a rebuild the old and new CA have the same subject (CN=kubernetes); OpenSSL picks
    # the issuer by name + key identifier, so certificates without AKID fail against an old+new bundle.
    ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
           "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid,issuer"]
    eku = []
    if client:
        eku.append("clientAuth")
    if server_sans:
        eku.append("serverAuth")
        ext.append("subjectAltName=" + ",".join(server_sans))
    if eku:
        ext.append("extendedKeyUsage=" + ",".join(eku))
    tag = secrets.token_hex(8)
    key_path = os.path.join(tmpdir, "tmp-%s.key" % tag)
    ext_path = os.path.join(tmpdir, "tmp-%s.ext" % tag)
    try:
        write_private(key_path, key)
        with open(ext_path, "w") as f:
            f.write("\n".join(ext) + "\n")
        csr = _run(["openssl", "req", "-new", "-key", key_path, "-subj", subj])
        cert = _run(["openssl", "x509", "-req", "-CA", ca_cert, "-CAkey", ca_key, "-days", str(days),
                     "-set_serial", str(secrets.randbits(120)), "-extfile", ext_path, "-sha256"], csr)
        return cert.decode(), key.decode()
    finally:
        for p in (key_path, ext_path):
            try:
                os.unlink(p)
            except OSError:
                pass


def sign_jwt(claims, key):
    """A compact JWS of `claims` signed by the SAKey `key` (header alg + kid as the real server writes them)."""
    header = b64url(json.dumps({"alg": key.alg, "kid": key.kid}, separators=(",", ":")).encode())
    payload = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = (header + "." + payload).encode("ascii")
    return header + "." + payload + "." + b64url(key.sign(signing_input))


def legacy_token_claims(namespace, sa_name, sa_uid, secret_name):
    """Claims of a legacy (Secret-based) service-account token, key order as the real server."""
    return {
        "iss": LEGACY_ISSUER,
        "kubernetes.io/serviceaccount/namespace": namespace,
        "kubernetes.io/serviceaccount/secret.name": secret_name,
        "kubernetes.io/serviceaccount/service-account.name": sa_name,
        "kubernetes.io/serviceaccount/service-account.uid": sa_uid,
        "sub": "system:serviceaccount:%s:%s" % (namespace, sa_name),
    }


def bound_token_claims(namespace, sa_name, sa_uid, audiences=None, expiration_seconds=3600, now=None,
                       bound_object=None):
    """Claims of a TokenRequest (bound) token as issued by the real server."""
    import time
    now = int(now if now is not None else time.time())
    k8s = {"namespace": namespace, "serviceaccount": {"name": sa_name, "uid": sa_uid}}
    if bound_object:
        k8s[bound_object["kind"].lower()] = {"name": bound_object["name"], "uid": bound_object.get("uid", "")}
    return {
        "aud": list(audiences or [ISSUER]),
        "exp": now + int(expiration_seconds),
        "iat": now,
        "iss": ISSUER,
        "kubernetes.io": k8s,
        "nbf": now,
        "sub": "system:serviceaccount:%s:%s" % (namespace, sa_name),
    }


class PKI:
    """Cluster CA + service-account keys, kept under `workdir`."""

    def __init__(self, workdir, sa_key_type="rsa"):
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.sa_key_type = sa_key_type
        self._lock = threading.RLock()
        self._rebuild_hooks = []
        self.old_ca_cert_pems = []
        self.old_sa_keys = []
        self.generation = 0
        self._verify_cache = {}
        self._new_ca()
        self.current_sa_key = self.new_sa_key()
        self.sa_keys = [self.current_sa_key]

    # ---- CA / certificates
    def _path(self, name):
        return os.path.join(self.workdir, name)

    def _new_ca(self):
        self.generation += 1
        key_path = self._path("ca-%d.key" % self.generation)
        cert_path = self._path("ca-%d.crt" % self.generation)
        # the first CA is old (the cluster was made long ago); a rebuild's CA is made now
        nb = int(time.time()) - INITIAL_CA_AGE if self.generation == 1 else None
        self.ca_cert_pem = new_ca(cert_path, key_path, "kubernetes", not_before=nb)
        self.ca_key_path = key_path
        self.ca_cert_path = cert_path

    def issue_cert(self, cn, orgs=(), server_sans=None, client=True, days=365, ca=None, key_type="ec"):
        """Returns (cert_pem, key_pem) as str.  server_sans: list like ["IP:127.0.0.1", "DNS:localhost"]."""
        ca_cert, ca_key = ca if ca else (self.ca_cert_path, self.ca_key_path)
        return issue_cert(self.workdir, ca_cert, ca_key, cn, orgs, server_sans, client, days, key_type)

    def sign_csr(self, csr_pem, usages=("digital signature", "key encipherment", "server auth"), days=365):
        """CSR signer: signs a PEM CSR with the current CA, copying its SANs; returns the certificate PEM (str)."""
        if isinstance(csr_pem, str):
            csr_pem = csr_pem.encode()
        ku_map = {"digital signature": "digitalSignature", "key encipherment": "keyEncipherment",
                  "content commitment": "nonRepudiation", "key agreement": "keyAgreement",
                  "cert sign": "keyCertSign", "crl sign": "cRLSign"}
        eku_map = {"server auth": "serverAuth", "client auth": "clientAuth", "code signing": "codeSigning",
                   "email protection": "emailProtection"}
        ku = [ku_map[u] for u in usages if u in ku_map]
        eku = [eku_map[u] for u in usages if u in eku_map]
        ext = ["basicConstraints=critical,CA:FALSE", "subjectKeyIdentifier=hash", "authorityKeyIdentifier=keyid,issuer"]
        if ku:
            ext.append("keyUsage=critical," + ",".join(ku))
        if eku:
            ext.append("extendedKeyUsage=" + ",".join(eku))
        tag = secrets.token_hex(8)
        ext_path = self._path("tmp-%s.ext" % tag)
        try:
            with open(ext_path, "w") as f:
                f.write("\n".join(ext) + "\n")
            with self._lock:
                ca_cert, ca_key = self.ca_cert_path, self.ca_key_path
            cert = _run(["openssl", "x509", "-req", "-CA", ca_cert, "-CAkey", ca_key, "-days", str(days),
                         "-set_serial", str(secrets.randbits(120)), "-extfile", ext_path, "-sha256",
                         "-copy_extensions", "copy"], csr_pem)
            return cert.decode()
        finally:
            try:
                os.unlink(ext_path)
            except OSError:
                pass

    # ---- service-account keys and JWTs
    def new_sa_key(self):
        return SAKey(genkey(self.sa_key_type), self.sa_key_type)

    def sign_jwt(self, claims, key=None):
        return sign_jwt(claims, key or self.current_sa_key)

    def verify_jwt(self, token):
        """Claims dict if `token` is a JWT signed by a CURRENT service-account key (exp/nbf checked), else None."""
        import time
        if not token or token.count(".") != 2:
            return None
        with self._lock:
            cached = self._verify_cache.get(token)
            keys = list(self.sa_keys)
        if cached is None:
            try:
                h, p, s = token.split(".")
                header = json.loads(b64url_decode(h))
                claims = json.loads(b64url_decode(p))
                sig = b64url_decode(s)
            except Exception:  # noqa: BLE001 - any malformed token is just invalid
                return None
            if not isinstance(header, dict) or not isinstance(claims, dict):
                return None
            ok = False
            for key in keys:
                if header.get("alg") != key.alg:
                    continue
                if key.verify((h + "." + p).encode("ascii"), sig):
                    ok = True
                    break
            if not ok:
                return None
            cached = claims
            with self._lock:
                if len(self._verify_cache) > 200000:
                    self._verify_cache.clear()
                self._verify_cache[token] = claims
        now = time.time()
        if "exp" in cached and isinstance(cached["exp"], (int, float)) and now > cached["exp"]:
            return None
        if "nbf" in cached and isinstance(cached["nbf"], (int, float)) and now + 60 < cached["nbf"]:
            return None
        return dict(cached)

    def jwks(self):
        with self._lock:
            return {"keys": [k.jwk() for k in self.sa_keys]}

    # ---- rotation
    def on_rebuild(self, fn):
        self._rebuild_hooks.append(fn)

    def rebuild(self):
        """New CA and new SA key become current; the old CA is remembered in old_ca_cert_pems."""
        new_key = self.new_sa_key()
        with self._lock:
            self.old_ca_cert_pems.append(self.ca_cert_pem)
            self.old_sa_keys.append(self.current_sa_key)
            self._new_ca()
            self.current_sa_key = new_key
            self.sa_keys = [new_key]
            self._verify_cache.clear()
        for fn in list(self._rebuild_hooks):
            fn(self)

    def old_sa_key(self):
        """The most recent previous SA key (None before the first rebuild)."""
        return self.old_sa_keys[-1] if self.old_sa_keys else None
