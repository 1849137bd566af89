"""PKCS#10 CSRs for scenarios: build them with the `openssl` CLI, parse them with a tiny DER reader.

build_csr(key_pem, cn, orgs, dns, ips, emails, uris) -> PEM (str); keys are EC P-256 and meant to be reused
(one per node) so generating hundreds of CSRs costs one `openssl req` call each (~5 ms).
parse_csr(pem) -> dict(cn, orgs, dns, ips, emails, uris) or raises ValueError (bad PEM / garbage).
csr_request_b64(pem) -> the value for spec.request (base64 of the PEM bytes).
"""

import base64
import ipaddress
import os
import subprocess
import tempfile
import threading

_KEY_CACHE = {}
_KEY_LOCK = threading.Lock()


def _run(args, data=None):
    proc = subprocess.run(args, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise RuntimeError("openssl failed: %s" % proc.stderr.decode(errors="replace")[-300:])
    return proc.stdout


def new_key():
    """A fresh EC P-256 private key (PEM str)."""
    return _run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]).decode()


def key_for(label):
    """A cached EC key per label (e.g. per node name), so many CSRs reuse few keys."""
    with _KEY_LOCK:
        key = _KEY_CACHE.get(label)
        if key is None:
            key = new_key()
            _KEY_CACHE[label] = key
        return key


def _subj_escape(value):
    return value.replace("\\", "\\\\").replace("/", "\\/").replace("=", "\\=")


def build_csr(key_pem=None, cn="", orgs=(), dns=(), ips=(), emails=(), uris=()):
    """PEM CSR signed by key_pem (a cached key when None)."""
    key_pem = key_pem or key_for("_default")
    subj = "".join("/O=%s" % _subj_escape(o) for o in orgs)
    if cn:
        subj += "/CN=%s" % _subj_escape(cn)
    if not subj:
        subj = "/"
    sans = ["DNS:%s" % d for d in dns] + ["IP:%s" % i for i in ips] + ["email:%s" % e for e in emails] + \
        ["URI:%s" % u for u in uris]
    fd, path = tempfile.mkstemp(prefix="apisim-csr-", suffix=".key")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(key_pem)
        args = ["openssl", "req", "-new", "-key", path, "-subj", subj]
        if sans:
            args += ["-addext", "subjectAltName=" + ",".join(sans)]
        return _run(args).decode()
    finally:
        os.unlink(path)


SERVING_USAGES = ["digital signature", "key encipherment", "server auth"]
CLIENT_USAGES = ["digital signature", "key encipherment", "client auth"]
KUBELET_SERVING = "kubernetes.io/kubelet-serving"
KUBELET_CLIENT = "kubernetes.io/kube-apiserver-client-kubelet"
# what a kubelet asks for (valid) and the ways a CSR can be forged or broken (kind_fields)
KINDS = ("valid", "otherNodeIP", "otherNodeDNS", "foreignDNS", "nonNodeRequester", "clientUsages", "emailSAN",
         "uriSAN", "cnMismatch", "noOrg", "noSANs", "clientKubelet")


def kind_fields(kind, node, ip, other=None, other_ip=None, dns=None, email=None, uri=None):
    """The CSR the kubelet of `node` (InternalIP `ip`) asks for, changed as `kind` (one of KINDS) says: a dict
    cn, orgs, dns, ips, emails, uris, usages, signer. valid: CN=system:node:<node>, O=system:nodes, SANs = node
    name + ip, serving usages. otherNodeIP/otherNodeDNS add `other_ip` / `other`; foreignDNS adds `dns`
    (evil.example.com); clientUsages: client auth; emailSAN/uriSAN add `email` / `uri`; cnMismatch: CN of
    `other`; noOrg: no O; noSANs: no SANs; clientKubelet: a client-certificate CSR (kube-apiserver-client-kubelet,
    no SANs); nonNodeRequester: the valid fields (only the requester differs). Raises ValueError for other kinds."""
    if kind not in KINDS:
        raise ValueError("CSR kind %r not in %s" % (kind, ", ".join(KINDS)))
    f = {"cn": "system:node:%s" % node, "orgs": ["system:nodes"], "dns": [node], "ips": [ip], "emails": [],
         "uris": [], "usages": list(SERVING_USAGES), "signer": KUBELET_SERVING}
    if kind == "otherNodeIP":
        f["ips"] = [ip, other_ip]
    elif kind == "otherNodeDNS":
        f["dns"] = [node, other]
    elif kind == "foreignDNS":
        f["dns"] = [node, dns or "evil.example.com"]
    elif kind == "clientUsages":
        f["usages"] = list(CLIENT_USAGES)
    elif kind == "emailSAN":
        f["emails"] = [email or "admin@example.com"]
    elif kind == "uriSAN":
        f["uris"] = [uri or "spiffe://cluster.local/ns/default/sa/default"]
    elif kind == "cnMismatch":
        f["cn"] = "system:node:%s" % other
    elif kind == "noOrg":
        f["orgs"] = []
    elif kind == "noSANs":
        f["dns"], f["ips"] = [], []
    elif kind == "clientKubelet":
        f.update(dns=[], ips=[], usages=list(CLIENT_USAGES), signer=KUBELET_CLIENT)
    return f


def csr_request_b64(pem):
    if isinstance(pem, str):
        pem = pem.encode()
    return base64.b64encode(pem).decode()


# --------------------------------------------------------------------------- parsing

_OID_CN = "2.5.4.3"
_OID_O = "2.5.4.10"
_OID_EXT_REQ = "1.2.840.113549.1.9.14"
_OID_SAN = "2.5.29.17"


def _read(buf, pos):
    if pos + 2 > len(buf):
        raise ValueError("truncated DER")
    tag = buf[pos]
    length = buf[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(buf):
            raise ValueError("bad DER length")
        length = int.from_bytes(buf[pos:pos + n], "big")
        pos += n
    if pos + length > len(buf):
        raise ValueError("truncated DER")
    return tag, buf[pos:pos + length], pos + length


def _items(buf):
    pos = 0
    out = []
    while pos < len(buf):
        tag, val, pos = _read(buf, pos)
        out.append((tag, val))
    return out


def _oid(raw):
    if not raw:
        raise ValueError("empty OID")
    parts = [raw[0] // 40, raw[0] % 40]
    n = 0
    for b in raw[1:]:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(n)
            n = 0
    return ".".join(str(p) for p in parts)


def pem_to_der(pem):
    if isinstance(pem, bytes):
        pem = pem.decode("ascii", errors="replace")
    begin = "-----BEGIN CERTIFICATE REQUEST-----"
    end = "-----END CERTIFICATE REQUEST-----"
    if begin not in pem:
        begin, end = "-----BEGIN NEW CERTIFICATE REQUEST-----", "-----END NEW CERTIFICATE REQUEST-----"
    if begin not in pem or end not in pem:
        raise ValueError("PEM block type must be CERTIFICATE REQUEST")
    body = pem.split(begin, 1)[1].split(end, 1)[0]
    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except Exception as e:  # noqa: BLE001
        raise ValueError("bad base64 in PEM: %s" % e)


def parse_csr(pem):
    """Subject CN/O and SANs of a PEM CSR (signature not verified). Raises ValueError on garbage."""
    der = pem_to_der(pem)
    tag, req, _ = _read(der, 0)
    if tag != 0x30:
        raise ValueError("not a SEQUENCE")
    parts = _items(req)
    if len(parts) < 3 or parts[0][0] != 0x30:
        raise ValueError("not a CertificationRequest")
    info = _items(parts[0][1])
    if len(info) < 3:
        raise ValueError("bad CertificationRequestInfo")
    out = {"cn": "", "orgs": [], "dns": [], "ips": [], "emails": [], "uris": []}
    for _tag, rdn in _items(info[1][1]):
        for _t, atv in _items(rdn):
            kv = _items(atv)
            oid = _oid(kv[0][1])
            value = kv[1][1].decode("utf-8", errors="replace")
            if oid == _OID_CN:
                out["cn"] = value
            elif oid == _OID_O:
                out["orgs"].append(value)
    for tag, val in info[3:]:
        if tag != 0xA0:
            continue
        for _t, attr in _items(val):
            a = _items(attr)
            if _oid(a[0][1]) != _OID_EXT_REQ:
                continue
            for _t2, exts in _items(a[1][1]):
                for _t3, ext in _items(exts):
                    e = _items(ext)
                    if _oid(e[0][1]) != _OID_SAN:
                        continue
                    _, names, _ = _read(e[-1][1], 0)
                    for ntag, nval in _items(names):
                        kind = ntag & 0x1F
                        if kind == 1:
                            out["emails"].append(nval.decode(errors="replace"))
                        elif kind == 2:
                            out["dns"].append(nval.decode(errors="replace"))
                        elif kind == 6:
                            out["uris"].append(nval.decode(errors="replace"))
                        elif kind == 7:
                            out["ips"].append(str(ipaddress.ip_address(nval)))
    return out


def parse_request_b64(request_b64):
    """parse_csr() of a CSR's spec.request (base64 of PEM)."""
    try:
        pem = base64.b64decode(request_b64 or "")
    except Exception as e:  # noqa: BLE001
        raise ValueError("spec.request is not base64: %s" % e)
    return parse_csr(pem)


# --------------------------------------------------------------------------- fast in-process CSR builder

def _len(n):
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag, body):
    return bytes([tag]) + _len(len(body)) + body


def _enc_oid(dotted):
    parts = [int(x) for x in dotted.split(".")]
    out = bytearray([parts[0] * 40 + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        out += bytes(reversed(chunk))
    return _tlv(0x06, bytes(out))


class FastKey:
    """An EC P-256 key loaded into libcrypto (via pki's ctypes wrapper) for signing many CSRs quickly."""

    def __init__(self, key_pem=None):
        from .pki import crypto
        if key_pem is None:
            key_pem = new_key()
        self.key_pem = key_pem.encode() if isinstance(key_pem, str) else key_pem
        self.spki = _run(["openssl", "pkey", "-pubout", "-outform", "DER"], self.key_pem)
        self._pkey = crypto().load_private(self.key_pem)

    def sign(self, data):
        from .pki import crypto
        return crypto().sign(self._pkey, data)


def build_csr_fast(key, cn="", orgs=(), dns=(), ips=(), emails=(), uris=()):
    """Same result as build_csr() (ECDSA-SHA256 PKCS#10 PEM) without a subprocess; key is a FastKey."""
    rdns = b""
    for o in orgs:
        rdns += _tlv(0x31, _tlv(0x30, _enc_oid(_OID_O) + _tlv(0x0C, o.encode())))
    if cn:
        rdns += _tlv(0x31, _tlv(0x30, _enc_oid(_OID_CN) + _tlv(0x0C, cn.encode())))
    subject = _tlv(0x30, rdns)
    names = b""
    for e in emails:
        names += _tlv(0x81, e.encode())
    for d in dns:
        names += _tlv(0x82, d.encode())
    for u in uris:
        names += _tlv(0x86, u.encode())
    for i in ips:
        names += _tlv(0x87, ipaddress.ip_address(i).packed)
    attrs = b""
    if names:
        ext = _tlv(0x30, _enc_oid(_OID_SAN) + _tlv(0x04, _tlv(0x30, names)))
        attrs = _tlv(0x30, _enc_oid(_OID_EXT_REQ) + _tlv(0x31, _tlv(0x30, ext)))
    info = _tlv(0x30, b"\x02\x01\x00" + subject + key.spki + _tlv(0xA0, attrs))
    sig = key.sign(info)
    alg = _tlv(0x30, _enc_oid("1.2.840.10045.4.3.2"))
    der = _tlv(0x30, info + alg + _tlv(0x03, b"\x00" + sig))
    b = base64.b64encode(der).decode()
    return "-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(b[i:i + 64] for i in range(0, len(b), 64)) + \
        "\n-----END CERTIFICATE REQUEST-----\n"
