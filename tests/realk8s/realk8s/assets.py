"""Where the real Kubernetes binaries come from (like controller-runtime's envtest and KUBEBUILDER_ASSETS).

$KUBEMEND_K8S_ASSETS  a folder with one sub-folder per version (`v1.19/`, `v1.26/`), each holding
                      `kube-apiserver` and `kube-controller-manager`, plain or `.xz`; default <repo>/../shared/k8s
$KUBEMEND_K8S_VERSIONS comma list restricting the versions (`v1.26` or `1.26`); default: every version found
$KUBEMEND_ETCD        the etcd binary; default `etcd` on PATH (Debian's etcd-server)

`.xz` files are decompressed once into <repo>/build/k8s/<version>/ (reused while newer than the source), after
checking the source against the folder's SHA256SUMS when that file exists.
"""

import fcntl
import hashlib
import lzma
import os
import re
import shutil

from . import REPO_ROOT

ENV_ASSETS = "KUBEMEND_K8S_ASSETS"
ENV_VERSIONS = "KUBEMEND_K8S_VERSIONS"
ENV_ETCD = "KUBEMEND_ETCD"
BINARIES = ("kube-apiserver", "kube-controller-manager")
DEFAULT_ASSETS = os.path.join("..", "shared", "k8s")


class AssetError(RuntimeError):
    pass


def assets_dir():
    """The assets folder ($KUBEMEND_K8S_ASSETS or <repo>/../shared/k8s), absolute."""
    return os.path.abspath(os.environ.get(ENV_ASSETS) or os.path.join(REPO_ROOT, DEFAULT_ASSETS))


def build_dir():
    return os.path.join(REPO_ROOT, "build", "k8s")


def _version_key(v):
    return tuple(int(x) for x in re.findall(r"\d+", v)) or (0,)


def _norm(v):
    v = v.strip()
    return v if v.startswith("v") else "v" + v


def _source(folder, name):
    plain = os.path.join(folder, name)
    if os.path.isfile(plain) and os.access(plain, os.X_OK):
        return plain
    if os.path.isfile(plain + ".xz"):
        return plain + ".xz"
    return None


def found_versions():
    """{version: {binary: source path}} for every sub-folder of the assets folder holding both binaries."""
    root = assets_dir()
    out = {}
    if not os.path.isdir(root):
        return out
    for v in sorted(os.listdir(root), key=_version_key):
        folder = os.path.join(root, v)
        if not (os.path.isdir(folder) and re.match(r"^v?\d+\.\d+", v)):
            continue
        srcs = {b: _source(folder, b) for b in BINARIES}
        if all(srcs.values()):
            out[v] = srcs
    return out


def requested_versions():
    """The versions named in $KUBEMEND_K8S_VERSIONS (normalized `vX.Y`), or None when unset."""
    raw = os.environ.get(ENV_VERSIONS, "").strip()
    if not raw:
        return None
    return [_norm(v) for v in raw.split(",") if v.strip()]


def etcd_binary():
    """Path of etcd ($KUBEMEND_ETCD, else `etcd` on PATH, else /usr/bin/etcd), or None."""
    env = os.environ.get(ENV_ETCD)
    if env:
        return env if os.access(env, os.X_OK) else None
    return shutil.which("etcd") or ("/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None)


def available_versions():
    """Sorted versions usable here: found in the assets folder, allowed by $KUBEMEND_K8S_VERSIONS, etcd present."""
    if etcd_binary() is None:
        return []
    found = found_versions()
    want = requested_versions()
    if want is None:
        return list(found)
    return [v for v in found if v in want]


def skip_reason():
    """None when at least one version is available, else one line saying why and which variable to set."""
    if available_versions():
        return None
    if etcd_binary() is None:
        return ("real-server suites skipped: no etcd binary ($%s unset and no `etcd` on PATH; Debian package "
                "etcd-server)" % ENV_ETCD)
    found = found_versions()
    if found and requested_versions() is not None:
        return ("real-server suites skipped: $%s=%s matches none of the versions in %s (%s)"
                % (ENV_VERSIONS, os.environ.get(ENV_VERSIONS), assets_dir(), ", ".join(found)))
    return ("real-server suites skipped: no kube-apiserver binaries in $%s (default ../shared/k8s; looked in %s)"
            % (ENV_ASSETS, assets_dir()))


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _expected_sums():
    path = os.path.join(assets_dir(), "SHA256SUMS")
    sums = {}
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    sums[parts[1].lstrip("*").lstrip("./")] = parts[0]
    return sums


def _decompress(src, dest, rel):
    want = _expected_sums().get(rel)
    if want is not None and _sha256(src) != want:
        raise AssetError("%s does not match SHA256SUMS in %s" % (src, assets_dir()))
    tmp = dest + ".tmp.%d" % os.getpid()
    with lzma.open(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)


def binaries(version):
    """{binary: executable path} for `version`; `.xz` sources are decompressed once (file-locked, so parallel
    test processes share the work). Raises AssetError when the version is not there."""
    srcs = found_versions().get(version)
    if srcs is None:
        raise AssetError("version %s not found in %s ($%s)" % (version, assets_dir(), ENV_ASSETS))
    out = {}
    dest_dir = os.path.join(build_dir(), version)
    for name, src in srcs.items():
        if not src.endswith(".xz"):
            out[name] = src
            continue
        os.makedirs(dest_dir, exist_ok=True)
        dest = os.path.join(dest_dir, name)
        with open(os.path.join(dest_dir, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (os.path.isfile(dest) and os.path.getmtime(dest) >= os.path.getmtime(src)):
                _decompress(src, dest, "%s/%s.xz" % (version, name))
        out[name] = dest
    return out
