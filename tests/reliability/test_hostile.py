"""Hostile archives (issue 10, item 1): every case of ci/channel/hostile.py and
ci/pypi/hostile.py is refused at cache, hydrate and bake time with exit 6 and a one-line
message naming the package and the problem, and nothing at all appears outside the command's
own staging: the sentinel folder every hostile path aims at stays byte-identical, and the
case's whole folder (HOME, store, prefix parent, OCI layout) changes only where the command
keeps its caches.

- cache: the real `imgbuild resolve` against the hostile channel / index (the download is
  refused before it is stored; no env record is written).
- hydrate / bake: the archive is planted in a store under its key with an env record naming it
  (cache would refuse it), then `imgbuild create` / `imgbuild push --to oci:` must refuse it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from relhelp import clean_failure, diff, outside, run_table, snapshot

CATEGORY = "hostile archives"

# names the hostile members try to create: none may appear anywhere
ESCAPE_NAMES = {
    "dotdot.txt", "escaped-dir", "through.txt", "through-abs.txt", "absolute.txt",
    "zipslip.py", "absolute.py", "data.txt",
}  # fmt: skip

# Where a command may write in its case folder: its own caches in HOME (repodata, uv, rattler,
# validation and temp folders: other phases add caches over time) and the store's and the
# prefix's lock, lease and temp files. The hostile archive itself must appear in none of them
# (FORBIDDEN_IN_CACHES below), and everything else must be unchanged.
ALLOWED = [
    "home/.imgbuild/cache",
    "home/.cache",
    "store/leases",
    "store/.tmp",
    "store/.locks",
    ".prefix.imgbuild-lock",
]


def _forbidden(case: dict) -> list[str]:
    """Traces of the hostile archive that no cache may hold: rattler's unpacked folder (named
    after the package), a 'verified' stamp or a local copy (named by its sha256s)."""
    stem = case["filename"].removesuffix(".conda").removesuffix(".tar.bz2").removesuffix(".whl")
    return [stem, case["sha256"], case["served_sha256"]]


def _slug(cid: str) -> str:
    return cid.replace(":", "-").replace("/", "-")


def _names_package(r, case: dict) -> str | None:
    err = json.loads(r.stdout or "{}").get("error") or {}
    msg = err.get("message", "")
    if "refusing package" in msg and f"refusing package {case['filename']}:" not in msg:
        return f"the refusal does not name the archive as published: {msg[:200]!r}"
    if case["package"] in msg or case["filename"] in msg:
        return None
    return f"the message does not name {case['package']} or {case['filename']}: {msg!r}"


def _expect(case: dict, phase: str) -> list[str]:
    if case["id"].endswith("sha-mismatch.conda") or case["id"].endswith("sha-mismatch.whl"):
        # cache compares the download with the index; hydrate/bake the stored file with its key
        return ["sha256 mismatch"] if phase == "cache" else ["expected sha256"]
    return [case["expect"]]


def _escapes(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.name in ESCAPE_NAMES]


def _after(case_dir: Path, before: dict, forbidden: list[str], sentinel: Path, sentinel_before):
    problems = []
    changed = diff(sentinel_before, snapshot(sentinel))
    if changed:
        problems.append(f"written outside: sentinel changed: {changed}")
    changes = diff(before, snapshot(case_dir))
    bad = outside(changes, ALLOWED)
    if bad:
        problems.append(f"unexpected changes in the case folder: {bad[:20]}")
    traces = [c for c in changes if c.startswith("+ home/") and any(f in c for f in forbidden)]
    if traces:
        problems.append(f"the refused archive left traces in a cache: {traces[:10]}")
    esc = _escapes(case_dir)
    if esc:
        problems.append(f"escaped names present: {esc}")
    return problems


# --------------------------------------------------------------------------- planting


def _conda_package(hostile, case: dict) -> dict:
    rec = case["record"]
    return {
        "kind": "conda",
        "subdir": rec["subdir"],
        "name": rec["name"],
        "version": rec["version"],
        "build": rec["build"],
        "sha256": rec["sha256"],
        "md5": rec.get("md5"),
        "filename": case["filename"],
        "url": f"{hostile.channel_url}/{rec['subdir']}/{case['filename']}",
        "size": rec["size"],
        "depends": list(rec.get("depends", [])),
        "channel": hostile.channel_url,
        "record": rec,
    }


def _wheel_package(hostile, case: dict) -> dict:
    return {
        "kind": "pypi",
        "subdir": "noarch",
        "name": case["package"],
        "version": "1.0",
        "build": "py3-none-any",
        "sha256": case["sha256"],
        "filename": case["filename"],
        "url": f"{hostile.index_url.rsplit('/simple', 1)[0]}/files/{case['filename']}",
        "size": case["size"],
    }


def _rig_python(rig, arch: str) -> tuple[dict, Path]:
    """The rig channel's python for arch as an env Package (and its archive)."""
    folder = Path(rig.channel_dir) / arch
    repo = json.loads((folder / "repodata.json").read_text())
    for section in ("packages.conda", "packages"):
        for fn, rec in repo.get(section, {}).items():
            if rec["name"] == "python":
                pkg = {
                    "kind": "conda", "subdir": arch, "name": "python", "version": rec["version"],
                    "build": rec["build"], "sha256": rec["sha256"], "md5": rec.get("md5"),
                    "filename": fn, "url": f"{rig.channel_url}/{arch}/{fn}", "size": rec["size"],
                    "depends": rec.get("depends", []), "channel": rig.channel_url, "record": rec,
                }  # fmt: skip
                return pkg, folder / fn
    raise AssertionError(f"no python for {arch} in the rig channel")


def plant(store_dir: Path, hostile, rig, case: dict, phase: str) -> tuple[str, list[str]]:
    """Put the case's archive (the bytes the server sends) under its store key, with an env
    record naming it; returns the env's full_id16 and the sha256s of the good packages."""
    from imagebuilder.env import Package, ResolvedEnv
    from imagebuilder.spec import make_spec
    from imagebuilder.store import open_store
    from imagebuilder.store.envs import put_env

    store = open_store(str(store_dir))
    packages = []
    if case["kind"] == "conda":
        pkg = _conda_package(hostile, case)
        spec = make_spec(arch="linux-64", conda=[case["package"]], channels=[hostile.channel_url])
    else:
        pkg = _wheel_package(hostile, case)
        if phase == "bake":
            # images need a conda python: the rig's small linux-aarch64 one (no .pyc step)
            arch = "linux-aarch64"
            py, py_file = _rig_python(rig, arch)
            store.put_file(f"pkgs/conda/{py['sha256']}/{py['filename']}", py_file)
            packages.append(Package.from_json(py))
        else:
            arch = "linux-64"
        spec = make_spec(
            arch=arch, pypi=[case["package"]], indexes=[hostile.index_url],
            conda=["python"] if phase == "bake" else [],
        )  # fmt: skip
    p = Package.from_json(pkg)
    store.put_file(p.store_key, Path(case["path"]))
    env = ResolvedEnv(spec, (*packages, p))
    put_env(store, env)
    return env.full_id[:16], [g.sha256 for g in packages]


# --------------------------------------------------------------------------- the phases


@pytest.mark.parametrize("phase", ["cache", "hydrate", "bake"])
def test_hostile_archives_refused(phase, hostile, rig, runner, tmp_path, record):
    rig.need("channel_dir")
    sentinel_before = snapshot(hostile.sentinel)
    assert sentinel_before and "victim.txt" in sentinel_before

    def one(case: dict) -> str | None:
        d = tmp_path / _slug(case["id"])
        run = runner(d)
        if phase == "cache":
            if case["kind"] == "conda":
                args = ["resolve", "-c", hostile.channel_url, "--conda", case["package"]]
            else:
                args = ["resolve", "--python-from-base", "--index-url", hostile.index_url,
                        "--pypi", case["package"]]  # fmt: skip
            args += ["--arch", "linux-64", "--json"]
        else:
            full, _ = plant(run.store, hostile, rig, case, phase)
            if phase == "hydrate":
                args = ["create", full, "--prefix", d / "prefix", "--json"]
            else:
                args = ["push", full, "--to", f"oci:{d / 'oci'}", "--base", "scratch", "--json"]
        before = snapshot(d)
        r = run(*args, expect=None, timeout=300)
        problems = []
        bad = clean_failure(r, 6, _expect(case, phase))
        if bad:
            problems.append(bad)
        else:
            named = _names_package(r, case)
            if named:
                problems.append(named)
        problems += _after(d, before, _forbidden(case), hostile.sentinel, sentinel_before)
        stored = [p for p in ("pkgs", "envs") if (run.store / p).exists()]
        if phase == "cache" and stored:
            problems.append(f"cache stored {stored} for a refused package")
        if phase == "hydrate" and (d / "prefix").exists():
            problems.append("the prefix exists after a refused create")
        if phase == "bake":
            idx = d / "oci" / "index.json"
            if idx.exists() and json.loads(idx.read_text()).get("manifests"):
                problems.append("the OCI layout names an image after a refused push")
            if (run.store / "layers").exists():
                problems.append("a layer record was written for a refused package")
        return "\n".join(problems) or None

    run_table(record, CATEGORY, one, list(hostile.cases), name=lambda c: f"{phase}:{c['id']}")
    assert not diff(sentinel_before, snapshot(hostile.sentinel))


def test_hostile_cases_cover_the_issue(hostile):
    """Guard against a builder silently dropping cases: the issue's list, both formats."""
    ids = {c["id"] for c in hostile.cases}
    for want in (
        "conda:dotdot.tar.bz2", "conda:dotdot.conda", "conda:dotdot-dir.tar.bz2",
        "conda:absolute.conda", "conda:symlink-out.tar.bz2", "conda:symlink-abs.conda",
        "conda:hardlink-abs.tar.bz2", "conda:device.tar.bz2", "conda:setuid.conda",
        "conda:paths-unlisted.tar.bz2", "conda:paths-sha.tar.bz2", "conda:bomb.conda",
        "conda:sha-mismatch.conda", "pypi:zipslip.whl", "pypi:record-hash.whl",
        "pypi:bomb.whl", "pypi:sha-mismatch.whl", "pypi:symlink.whl",
    ):  # fmt: skip
        assert want in ids, want
    assert len(ids) >= 40


def test_hostile_packs_refused(hostile, runner, tmp_path, record):
    """A pack planted in the store (members and the manifest's files to relocate aiming at the
    sentinel) is refused by `imgbuild create --from-pack`: exit 6, nothing outside."""
    from hostile_packs import cases, plant_pack

    sentinel_before = snapshot(hostile.sentinel)

    def one(case: str) -> str | None:
        d = tmp_path / f"pack-{case}"
        run = runner(d)
        full = plant_pack(run.store, case, hostile.sentinel)
        before = snapshot(d)
        r = run("create", full, "--prefix", d / "prefix", "--from-pack", "--json", expect=None)
        problems = []
        bad = clean_failure(r, 6, ["pack", cases(hostile.sentinel)[case][2]])
        if bad:
            problems.append(bad)
        problems += _after(d, before, [f"pack-{case}"], hostile.sentinel, sentinel_before)
        if (d / "prefix").exists():
            problems.append("the prefix exists after a refused pack")
        return "\n".join(problems) or None

    run_table(
        record, CATEGORY, one, sorted(cases(hostile.sentinel)), name=lambda c: f"hydrate:pack:{c}"
    )


def test_the_sentinel_sees_what_rattler_alone_does(hostile, tmp_path, record):
    """The control that makes the checks above able to fail: py-rattler's installer, given the
    `../` package WITHOUT imgbuild's archive check, creates the escaping folder in the sentinel
    (LOCAL-SERVICES.md), and the snapshot sees it. If py-rattler stops doing that, this test
    says so (update LOCAL-SERVICES.md)."""
    import shutil
    import subprocess
    import sys

    case = hostile.by_id("conda:dotdot-dir.tar.bz2")
    folder = Path(case["path"]).parent
    rec = dict(
        case["record"],
        fn=case["filename"],
        url=f"file://{case['path']}",
        channel=f"file://{folder}",
    )
    plan = {
        "staging": str(tmp_path / "staging"),
        "prefix": str(tmp_path / "staging"),
        "arch": "linux-64",
        "conda": [{"record": rec, "path": case["path"]}],
        "wheels": [],
        "cache_dir": str(tmp_path / "rattler-cache"),
        "portable_meta": False,
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    before = snapshot(hostile.sentinel)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "imagebuilder.install",
            tmp_path / "plan.json",
            tmp_path / "out.json",
        ],
        capture_output=True,
        timeout=300,
    )
    changed = diff(before, snapshot(hostile.sentinel))
    try:
        assert any("escaped-dir" in c for c in changed), (
            f"py-rattler alone no longer escapes (sentinel changes: {changed}); "
            f"installer said {(tmp_path / 'out.json').read_text()[:500] if (tmp_path / 'out.json').exists() else '?'}"
        )
    finally:
        shutil.rmtree(hostile.sentinel / "escaped-dir", ignore_errors=True)
    assert not diff(before, snapshot(hostile.sentinel))
