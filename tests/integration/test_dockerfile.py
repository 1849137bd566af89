"""Static checks of the Dockerfile (tests/image builds it with podman and runs the image; these
checks also run where no container engine is).

Checks the three stages (build, rootfs, the scratch image), the build running the repository's
`make all`, the non-root USER and the exec-form ENTRYPOINT, that every package it installs exists
for bookworm in `apt-cache policy`, that the build stage has a -dev package for every pkg-config
module the Makefile links, and that the rootfs stage's package set provides every shared library
the built binary needs.
"""
import json
import os
import re
import shlex
import shutil
import subprocess

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCKERFILE = os.path.join(ROOT, "Dockerfile")

# pkg-config module (Makefile PKGS) -> the Debian -dev package that provides it
DEV_PACKAGE = {
    "libcurl": "libcurl4-openssl-dev",
    "openssl": "libssl-dev",
    "libcjson": "libcjson-dev",
    "yaml-0.1": "libyaml-dev",
    "gmp": "libgmp-dev",
}
RUNTIME_LIBS = {"libcurl4", "libssl3", "libcjson1", "libyaml-0-2"}
RUNTIME = RUNTIME_LIBS | {"ca-certificates"}


def instructions(text):
    """[(INSTRUCTION, args)] with line continuations joined and comments dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        op, _, rest = cur.partition(" ")
        out.append((op.upper(), rest.strip()))
        cur = ""
    assert not cur, "dangling line continuation"
    return out


def stages(instrs):
    """[(FROM args, [(op, args)...])] per stage."""
    result = []
    for op, args in instrs:
        if op == "FROM":
            result.append((args, []))
        else:
            assert result, f"{op} before FROM"
            result[-1][1].append((op, args))
    return result


def arg_defaults(stage_instrs):
    """{name: default} of the stage's `ARG name="value"` lines."""
    out = {}
    for op, args in stage_instrs:
        if op == "ARG" and "=" in args:
            name, _, value = shlex.split(args)[0].partition("=")
            out[name] = value
    return out


def expand(text, variables):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables.get(m.group(1) or m.group(2), m.group(0)),
                  text)


def apt_installed(stage_instrs):
    """Packages named in `apt-get install` commands of one stage (ARG defaults expanded)."""
    pkgs = []
    variables = arg_defaults(stage_instrs)
    for op, args in stage_instrs:
        if op != "RUN":
            continue
        for cmd in re.split(r"&&|;", args):
            words = shlex.split(expand(cmd, variables))
            if words[:2] == ["apt-get", "install"]:
                pkgs += [w for w in words[2:] if not w.startswith("-")]
    return pkgs


@pytest.fixture(scope="module")
def parsed():
    with open(DOCKERFILE) as f:
        return stages(instructions(f.read()))


def test_three_stages_bookworm(parsed):
    assert len(parsed) == 3
    assert re.fullmatch(r"debian:bookworm\s+AS\s+build", parsed[0][0], re.I)
    assert re.fullmatch(r"debian:bookworm-slim\s+AS\s+rootfs", parsed[1][0], re.I)
    # the image: only files from the two stages, nothing run in it
    assert parsed[2][0] == "scratch"
    final = parsed[2][1]
    assert not [op for op, _ in final if op in ("RUN", "ADD")]
    copies = [a for op, a in final if op == "COPY"]
    assert sorted(a.split()[0] for a in copies) == ["--from=build", "--from=rootfs"], copies


def test_build_stage_runs_make_all(parsed):
    runs = " && ".join(a for op, a in parsed[0][1] if op == "RUN")
    makes = [shlex.split(c) for c in re.split(r"&&|;", runs) if shlex.split(c)[:1] == ["make"]]
    assert any("all" in m for m in makes), makes
    assert any("install" in m for m in makes), makes
    assert ("COPY", ". .") in parsed[0][1]


def test_runtime_user_and_entrypoint(parsed):
    final = parsed[2][1]
    users = [a for op, a in final if op == "USER"]
    assert users, "no USER in the runtime stage"
    assert users[-1] == "65532:65532"
    eps = [a for op, a in final if op == "ENTRYPOINT"]
    assert len(eps) == 1
    assert json.loads(eps[0]) == ["/usr/local/bin/kubemend"]
    cmd = [a for op, a in final if op == "CMD"]
    assert cmd and json.loads(cmd[0])[0] == "operator"


def test_deployment_runs_as_the_image_user():
    import yaml
    with open(os.path.join(ROOT, "deploy", "deployment.yaml")) as f:
        dep = yaml.safe_load(f)
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["containers"][0]["securityContext"]["runAsUser"] == 65532


def test_runtime_packages_are_exactly_the_libraries(parsed):
    rootfs = parsed[1][1]
    assert set(apt_installed(rootfs)) == RUNTIME
    assert set(arg_defaults(rootfs)["RUNTIME_LIBS"].split()) == RUNTIME_LIBS
    # /rootfs gets the dependency closure of exactly those libraries (and base-files)
    runs = " ".join(a for op, a in rootfs if op == "RUN")
    m = re.search(r"apt-cache depends --recurse .*? base-files \$\{RUNTIME_LIBS\} \|", runs)
    assert m, "the rootfs closure is not computed from RUNTIME_LIBS"


def test_build_stage_has_dev_package_per_pkg_config_module(parsed):
    with open(os.path.join(ROOT, "Makefile")) as f:
        m = re.search(r"^PKGS\s*:=\s*(.+)$", f.read(), re.M)
    assert m
    build_pkgs = set(apt_installed(parsed[0][1]))
    for mod in m.group(1).split():
        assert mod in DEV_PACKAGE, f"Makefile links {mod}: add its -dev package to the test map"
        assert DEV_PACKAGE[mod] in build_pkgs, mod
    assert {"build-essential", "pkg-config"} <= build_pkgs


@pytest.mark.skipif(not shutil.which("apt-cache"), reason="needs apt-cache")
def test_every_package_exists(parsed):
    pkgs = apt_installed(parsed[0][1]) + apt_installed(parsed[1][1])
    assert len(pkgs) >= 12
    out = subprocess.run(["apt-cache", "policy", *pkgs], capture_output=True, text=True,
                         check=True).stdout
    found = {}
    name = None
    for line in out.splitlines():
        if not line.startswith(" ") and line.endswith(":"):
            name = line[:-1]
        elif name and line.strip().startswith("Candidate:"):
            found[name] = line.split(":", 1)[1].strip()
    for p in pkgs:
        assert p in found, f"apt-cache policy does not know {p}"
        assert found[p] != "(none)", f"{p} has no installation candidate"


def _binaries():
    """The built kubemend binary and the kmhttp tool (same link line) that exist."""
    found = []
    for path in (os.environ.get("KUBEMEND_BIN"), os.path.join(ROOT, "build", "kubemend"),
                 os.path.join(os.environ.get("KUBEMEND_TOOLS", ""), "kmhttp")):
        if path and os.path.isfile(path) and os.path.realpath(path) not in found:
            found.append(os.path.realpath(path))
    return found


@pytest.mark.skipif(not (shutil.which("apt-cache") and shutil.which("dpkg-query")
                         and shutil.which("ldd")), reason="needs apt-cache, dpkg and ldd")
def test_runtime_stage_provides_every_needed_library():
    binaries = _binaries()
    if not binaries:
        pytest.skip("no built binary (run via `make test-integration`)")
    libs = set()
    for binary in binaries:
        ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
        if re.search(r"lib(asan|ubsan)\.so", ldd):
            continue  # a sanitizer build (make asan) links more than the image's build does
        libs |= {m.group(1) for m in re.finditer(r"=>\s+(/\S+)", ldd)}
    if not libs:
        pytest.skip("only sanitizer builds available; `make test-integration` checks this")
    # packages /rootfs gets: the libraries and everything they depend on
    out = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                          "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                          *sorted(RUNTIME_LIBS)], capture_output=True, text=True, check=True).stdout
    have = set(RUNTIME_LIBS)
    for line in out.splitlines():
        m = re.match(r"\s*(?:\|)?(?:Pre)?Depends:\s+<?([^\s<>:]+)", line)
        if m:
            have.add(m.group(1))
        elif line and not line.startswith(" "):
            have.add(line.strip().split(":")[0])

    def variants(path):  # merged /usr: dpkg may know either spelling
        return {path, path[4:] if path.startswith("/usr/") else "/usr" + path}

    cands = {lib: variants(lib) | variants(os.path.realpath(lib)) for lib in libs}
    r = subprocess.run(["dpkg-query", "-S", *sorted(set().union(*cands.values()))],
                       capture_output=True, text=True)
    owners = {}
    for line in r.stdout.splitlines():
        pkg, _, path = line.partition(": ")
        owners[path.strip()] = pkg.split(":")[0].strip()
    for lib in libs:
        owner = next((owners[c] for c in sorted(cands[lib]) if c in owners), None)
        assert owner is not None, f"no Debian package owns {lib}"
        assert owner in have, f"{lib} ({owner}) is not provided by the runtime stage"


def test_dockerignore_excludes_build_output_and_git():
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        entries = {l.strip() for l in f if l.strip() and not l.startswith("#")}
    for e in (".git", "build", "build-asan"):
        assert e in entries
    # nothing the build needs is excluded
    for needed in ("Makefile", "operator", "watch", "reconcilers", "tests", "crds", "deploy"):
        assert needed not in entries
