"""Base images built from Debian packages (no Docker Hub here), pushed to the rig registry.

  base         libc, bash, coreutils, ca-certificates (+ /etc/ssl/certs/ca-certificates.crt),
               libssl3 and the libraries a conda `python` needs (zlib, libffi, sqlite, lzma,
               bz2, ncurses, readline)
  python-base  base + Debian's python3 and pip: a generic "only Python and pip" image.
               Debian marks its python EXTERNALLY-MANAGED (PEP 668), as real images do.

Package closures come from `apt-get -s` against an empty dpkg status, .debs from
`apt-get download`, files from `dpkg-deb -x` (no maintainer scripts run; their few effects
that matter are reproduced: merged /usr, CA bundle, ld.so.cache, passwd/group, /tmp).
python-base is two layers: base's layer (shared blob) + the python packages.
Built once into ci/cache/images/bookworm-<key>/ where <key> hashes the package lists and
this code; a new apt state does not rebuild (delete the folder to refresh).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from services.base import CACHE, Rig, RigError, file_lock, http_status, run
from services.ocilayout import EPOCH, MT_MANIFEST, Layout, tree_entries

TAG = "bookworm"
REPO = "imgbuild-rig"
BASE = [
    "base-files",
    "libc6",
    "libc-bin",
    "dash",
    "bash",
    "coreutils",
    "ca-certificates",
    "openssl",
    "libssl3",
    "zlib1g",
    "libffi8",
    "libsqlite3-0",
    "liblzma5",
    "libbz2-1.0",
    "libncursesw6",
    "libtinfo6",
    "libreadline8",
]
PYTHON = ["python3", "python3-pip", "python-is-python3"]
IMAGES = {"base": [BASE], "python-base": [BASE, PYTHON]}  # name -> packages of each layer
ENV_KEYS = {"base": "IMGBUILD_RIG_BASE", "python-base": "IMGBUILD_RIG_PYBASE"}
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
MERGED = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")
DROP = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian")
FORMAT = 1  # bump to rebuild


@dataclass(frozen=True)
class Image:
    name: str
    layout: Path
    digest: str  # manifest digest


def cache_key() -> str:
    h = hashlib.sha256(json.dumps([FORMAT, IMAGES, arch()]).encode())
    for mod in ("debimage.py", "ocilayout.py"):
        h.update((Path(__file__).parent / mod).read_bytes())
    return h.hexdigest()[:16]


def arch() -> str:
    return (
        subprocess.run(
            ["dpkg", "--print-architecture"], capture_output=True, text=True
        ).stdout.strip()
        or "amd64"
    )


def oci_arch(deb_arch: str) -> str:
    return {"amd64": "amd64", "arm64": "arm64", "armhf": "arm", "i386": "386"}.get(
        deb_arch, deb_arch
    )


def closure(packages: list[str]) -> list[tuple[str, str]]:
    """(name, version) of `packages` and their dependencies, as apt would install them on an
    empty system, without recommends."""
    p = run(
        [
            "apt-get",
            "-s",
            "-o",
            "Dir::State::status=/dev/null",
            "-o",
            "APT::Install-Recommends=false",
            "-o",
            "APT::Install-Suggests=false",
            "install",
            *packages,
        ],
        env={**os.environ, "LC_ALL": "C"},
    )
    pkgs = re.findall(r"^Inst (\S+) \((\S+) ", p.stdout, re.M)
    if not pkgs:
        raise RigError("apt-get found no packages: run `apt-get update` (ci/install.sh does)")
    return sorted(pkgs)


def download(pkgs: list[tuple[str, str]], dest: Path) -> dict[str, Path]:
    dest.mkdir(parents=True, exist_ok=True)
    run(["apt-get", "download", *[f"{n}={v}" for n, v in pkgs]], cwd=dest)
    debs = {}
    for f in dest.glob("*.deb"):
        debs[f.name.split("_", 1)[0]] = f
    missing = [n for n, _ in pkgs if n not in debs]
    if missing:
        raise RigError(f"apt-get download did not fetch: {missing}")
    return debs


def merge_into(src: Path, dst: Path, conflicts: list[str]) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for entry in sorted(src.iterdir()):
        target = dst / entry.name
        if (
            entry.is_dir()
            and not entry.is_symlink()
            and target.is_dir()
            and not target.is_symlink()
        ):
            merge_into(entry, target, conflicts)
        elif not os.path.lexists(target):
            os.rename(entry, target)
        else:
            conflicts.append(str(target))


def usrmerge(root: Path, make_links: bool) -> list[str]:
    """Move /bin, /lib, ... into /usr (Debian 12's merged-/usr layout)."""
    conflicts: list[str] = []
    for d in MERGED:
        top = root / d
        if top.is_dir() and not top.is_symlink():
            merge_into(top, root / "usr" / d, conflicts)
            shutil.rmtree(top)
    if make_links:
        for d in ("bin", "sbin", "lib", "lib64"):
            (root / "usr" / d).mkdir(parents=True, exist_ok=True)
            if not os.path.lexists(root / d):
                os.symlink(f"usr/{d}", root / d)
    return conflicts


def extract(debs: list[Path], root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        run(["dpkg-deb", "-x", str(deb), str(root)])
    for d in DROP:
        shutil.rmtree(root / d, ignore_errors=True)


def finish_base(root: Path) -> None:
    for d, mode in (
        ("tmp", 0o1777),
        ("var/tmp", 0o1777),
        ("root", 0o700),
        ("proc", 0o755),
        ("sys", 0o755),
        ("dev", 0o755),
        ("run", 0o755),
        ("home", 0o755),
        ("etc/ssl/certs", 0o755),
    ):
        (root / d).mkdir(parents=True, exist_ok=True)
        os.chmod(root / d, mode)
    etc = root / "etc"
    if not (etc / "passwd").exists():
        (etc / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/bash\n"
            "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
        )
    if not (etc / "group").exists():
        (etc / "group").write_text("root:x:0:\nnogroup:x:65534:\n")
    # update-ca-certificates' bundle (its postinst does not run here)
    certs = sorted(root.glob("usr/share/ca-certificates/**/*.crt"))
    if not certs:
        raise RigError("ca-certificates shipped no certificates")
    bundle = b"".join(c.read_bytes().rstrip(b"\n") + b"\n" for c in certs)
    (etc / "ssl" / "certs" / "ca-certificates.crt").write_bytes(bundle)
    ldconfig(root)


def ldconfig(root: Path) -> None:
    exe = shutil.which("ldconfig") or "/sbin/ldconfig"
    run([exe, "-X", "-r", str(root)])
    (root / "var" / "cache" / "ldconfig" / "aux-cache").unlink(missing_ok=True)  # inodes, times


def config(name: str, layers: list[list[str]], deb_arch: str) -> dict:
    cmd = ["python3"] if name == "python-base" else ["/bin/bash"]
    return {
        "architecture": oci_arch(deb_arch),
        "os": "linux",
        "created": EPOCH,
        "config": {
            "Env": [PATH, "LANG=C.UTF-8"],
            "Cmd": cmd,
            "Labels": {"dev.imgbuild.rig.image": name},
        },
        "history": [
            {"created": EPOCH, "created_by": "debian packages: " + " ".join(pkgs)}
            for pkgs in layers
        ],
    }


def build(log=print) -> dict[str, Image]:
    """Build (or reuse) both images; return them by name."""
    key = cache_key()
    final = CACHE / "images" / f"{TAG}-{key}"
    with file_lock(CACHE / "images" / ".lock"):
        done = final / "done.json"
        if done.exists():
            meta = json.loads(done.read_text())
            return {n: Image(n, final / n, d) for n, d in meta["digests"].items()}
        log(f"debimage: building base images into {final} (cached afterwards)")
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        work = tmp / "work"
        deb_arch = arch()
        base_pkgs = closure(BASE)
        all_pkgs = closure(BASE + PYTHON)
        base_names = {n for n, _ in base_pkgs}
        debs = download(sorted(set(base_pkgs) | set(all_pkgs)), work / "debs")

        root = work / "base"
        extract([debs[n] for n, _ in base_pkgs], root)
        conflicts = usrmerge(root, make_links=True)
        finish_base(root)
        py = work / "python"
        extract([debs[n] for n, _ in all_pkgs if n not in base_names], py)
        conflicts += usrmerge(py, make_links=False)
        if conflicts:
            log(
                f"debimage: usrmerge kept the /usr copy of {len(conflicts)} path(s): {conflicts[:5]}"
            )

        base_layout = Layout(tmp / "base")
        base_layer = base_layout.put_layer(tree_entries(root))
        digests = {
            "base": base_layout.put_image(
                [base_layer], config("base", IMAGES["base"], deb_arch), TAG
            ).digest
        }

        # the python layer also carries the ld.so.cache of base + python
        shutil.copytree(py, root, symlinks=True, dirs_exist_ok=True)
        ldconfig(root)
        (py / "etc").mkdir(exist_ok=True)
        shutil.copy2(root / "etc" / "ld.so.cache", py / "etc" / "ld.so.cache")
        py_layout = Layout(tmp / "python-base")
        py_layout.add_blob_file(base_layout.blob_path(base_layer.blob.digest), base_layer.blob)
        py_layer = py_layout.put_layer(tree_entries(py))
        digests["python-base"] = py_layout.put_image(
            [base_layer, py_layer], config("python-base", IMAGES["python-base"], deb_arch), TAG
        ).digest

        shutil.rmtree(work)
        (tmp / "done.json").write_text(
            json.dumps(
                {"digests": digests, "packages": {"base": base_pkgs, "python-base": all_pkgs}},
                indent=1,
            )
        )
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        return {n: Image(n, final / n, d) for n, d in digests.items()}


def _copy_layout(src: Path, dst: Path) -> None:
    """A private copy of a cached layout for this rig (blobs hardlinked)."""
    if (dst / "index.json").exists() and (dst / "index.json").read_bytes() == (
        src / "index.json"
    ).read_bytes():
        return
    (dst / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    for blob in (src / "blobs" / "sha256").iterdir():
        target = dst / "blobs" / "sha256" / blob.name
        if not target.exists():
            try:
                os.link(blob, target)
            except OSError:
                shutil.copy2(blob, target)
    for f in ("oci-layout", "index.json"):
        shutil.copy2(src / f, dst / f)


def publish(rig: Rig, images: dict[str, Image], registry: str) -> dict[str, str]:
    """Push each image to `registry` (unless it already has that digest) and give its env keys."""
    env: dict[str, str] = {}
    for name, img in images.items():
        ref = f"{registry}/{REPO}/{name}:{TAG}"
        have = _registry_digest(registry, f"{REPO}/{name}", TAG)
        if have != img.digest:
            run(
                [
                    "skopeo",
                    "--insecure-policy",
                    "copy",
                    "--quiet",
                    "--preserve-digests",
                    "--dest-tls-verify=false",
                    f"oci:{img.layout}:{TAG}",
                    f"docker://{ref}",
                ]
            )
            have = _registry_digest(registry, f"{REPO}/{name}", TAG)
            if have != img.digest:
                raise RigError(f"{ref}: registry has {have}, expected {img.digest}")
        private = rig.dir / "images" / name
        _copy_layout(img.layout, private)
        key = ENV_KEYS[name]
        env |= {
            f"{key}_IMAGE": ref,
            f"{key}_DIGEST": img.digest,
            f"{key}_OCI": f"oci:{private}:{TAG}",
        }
    rig.update("images", env=env)
    return env


def _registry_digest(registry: str, repo: str, tag: str) -> str | None:
    import urllib.request

    url = f"http://{registry}/v2/{repo}/manifests/{tag}"
    if http_status(url, headers={"Accept": MT_MANIFEST}) != 200:
        return None
    req = urllib.request.Request(url, method="HEAD", headers={"Accept": MT_MANIFEST})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.headers.get("Docker-Content-Digest")


if __name__ == "__main__":  # cd ci && python -m services.debimage: build only, print the layouts
    for img in build(log=lambda m: print(m, file=sys.stderr)).values():
        print(img.name, img.digest, img.layout)
