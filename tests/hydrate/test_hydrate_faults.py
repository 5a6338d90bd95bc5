"""Bad input and faults of `imgbuild create`: each gives one clear message, its CONTRACT exit
code, and never a half-made env that looks complete."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydhelp import MIXED, Store, resolve, rig_s3, run_cli


@pytest.fixture(scope="module")
def resolved(rig, sources, module_home, tmp_path_factory):
    """A local store with a python env and a tiny one (tzdata), and an S3 store with the tiny
    one; the sources are stopped after."""
    root = tmp_path_factory.mktemp("localstore") / "store"
    store = Store(str(root), {"IMGBUILD_STORE": str(root)})
    envs = {
        "py": resolve(sources, store, module_home, *MIXED),
        "tiny": resolve(sources, store, module_home, "--conda", "tzdata"),
    }
    s3 = rig_s3(rig, "faults")
    s3_env = resolve(sources, s3, module_home, "--conda", "tzdata")
    sources.stop()
    return store, envs, s3, s3_env


@pytest.fixture
def local_envs(resolved):
    return resolved[:2]


@pytest.fixture
def store_copy(local_envs, tmp_path):
    """A private copy of the local store (a test may damage it)."""
    store, envs = local_envs
    root = tmp_path / "store"
    shutil.copytree(store.url, root)
    return Store(str(root), {"IMGBUILD_STORE": str(root)}), envs


def _pkg(env: dict, name: str) -> dict:
    return next(p for p in env["packages"] if p["name"] == name)


def _no_env_at(prefix: Path) -> None:
    """Nothing at prefix looks like a complete env, and no temp folder is left beside it."""
    assert not (prefix / "imgbuild-env.json").exists()
    if prefix.parent.exists():
        left = [p.name for p in prefix.parent.iterdir() if ".imgbuild-tmp-" in p.name]
        assert not left, left


def test_env_not_in_store(local_envs, tmp_path):
    store, _ = local_envs
    r = run_cli(
        ["create", "0123456789abcdef", "--prefix", tmp_path / "p"], store.env, tmp_path, expect=3
    )
    assert "no environment with full_id 0123456789abcdef" in r.stderr
    r = run_cli(["create", "nosuch/env", "--prefix", tmp_path / "p"], store.env, tmp_path, 3)
    assert "nosuch/env" in r.stderr
    assert not (tmp_path / "p").exists()


def test_package_missing_from_store(store_copy, tmp_path):
    store, envs = store_copy
    pkg = _pkg(envs["py"], "imgb-cli")
    (Path(store.url) / "pkgs/conda" / pkg["sha256"] / pkg["filename"]).unlink()
    prefix = tmp_path / "p"
    r = run_cli(["create", envs["py"]["full_id"][:16], "--prefix", prefix], store.env, tmp_path, 3)
    assert "package imgb-cli-1.0-h_imgb_0 (imgb-cli-1.0-h_imgb_0.conda) is missing" in r.stderr
    assert "hint:" in r.stderr and "Traceback" not in r.stderr
    _no_env_at(prefix)


def test_corrupted_package_names_both_hashes(store_copy, tmp_path):
    store, envs = store_copy
    pkg = _pkg(envs["py"], "tinyfoo")
    path = Path(store.url) / "pkgs/conda" / pkg["sha256"] / pkg["filename"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    got = __import__("hashlib").sha256(bytes(data)).hexdigest()
    prefix = tmp_path / "p"
    r = run_cli(
        ["create", envs["py"]["full_id"][:16], "--prefix", prefix, "--json"],
        store.env,
        tmp_path,
        6,
    )
    err = r.json()["error"]
    assert err["kind"] == "integrity"
    assert "tinyfoo" in err["message"] and pkg["sha256"] in err["message"] and got in err["message"]
    _no_env_at(prefix)


def test_corrupted_package_in_s3(rig, resolved, tmp_path):
    """Same from S3: the object is damaged in the bucket; the download is refused."""
    _, _, store, env = resolved
    pkg = _pkg(env, "tzdata")
    key = store.url.split("/", 3)[3] + f"/pkgs/conda/{pkg['sha256']}/{pkg['filename']}"
    s3 = rig.s3_client()
    s3.put_object(Bucket=rig.s3_bucket, Key=key, Body=b"not the package")
    r = run_cli(["create", env["full_id"][:16], "--prefix", tmp_path / "p"], store.env, tmp_path, 6)
    assert pkg["sha256"] in r.stderr
    _no_env_at(tmp_path / "p")


def _mount_tmpfs(where: Path, opts: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], check=True)


def _umount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_disk_full(local_envs, tmp_path):
    store, envs = local_envs
    small = tmp_path / "small"
    _mount_tmpfs(small, "size=4m")
    try:
        prefix = small / "env"
        r = run_cli(
            ["create", envs["py"]["full_id"][:16], "--prefix", prefix], store.env, tmp_path, 5
        )
        assert "no space left on the device while creating" in r.stderr
        assert "free disk space" in r.stderr
        _no_env_at(prefix)
        assert not prefix.exists()
    finally:
        _umount(small)


def test_target_not_writable(local_envs, tmp_path):
    store, envs = local_envs
    ro = tmp_path / "ro"
    _mount_tmpfs(ro, "ro,size=1m")
    try:
        r = run_cli(
            ["create", envs["tiny"]["full_id"][:16], "--prefix", ro / "env"], store.env, tmp_path, 1
        )
        assert f"cannot create {ro / 'env'}" in r.stderr
        assert "Read-only file system" in r.stderr
    finally:
        _umount(ro)


def test_other_env_needs_force(local_envs, tmp_path):
    store, envs = local_envs
    prefix = tmp_path / "p"
    tiny, py = envs["tiny"]["full_id"][:16], envs["py"]["full_id"][:16]
    run_cli(["create", tiny, "--prefix", prefix], store.env, tmp_path)
    r = run_cli(["create", py, "--prefix", prefix], store.env, tmp_path, 4)
    assert "already holds another environment" in r.stderr and "--force" in r.stderr
    assert json.loads((prefix / "imgbuild-env.json").read_text())["full_id"].startswith(tiny)
    run_cli(["create", py, "--prefix", prefix, "--force"], store.env, tmp_path)
    assert json.loads((prefix / "imgbuild-env.json").read_text())["full_id"].startswith(py)
    assert (prefix / "bin" / "python").exists()
    assert [p.name for p in tmp_path.iterdir() if "imgbuild-old" in p.name] == []


def test_foreign_folder_is_never_touched(local_envs, tmp_path):
    store, envs = local_envs
    prefix = tmp_path / "mine"
    prefix.mkdir()
    (prefix / "notes.txt").write_text("keep me")
    for extra in ([], ["--force"]):
        r = run_cli(
            ["create", envs["tiny"]["full_id"][:16], "--prefix", prefix, *extra],
            store.env,
            tmp_path,
            1,
        )
        assert "is not an imgbuild environment" in r.stderr
    assert (prefix / "notes.txt").read_text() == "keep me"


def test_usage_errors(local_envs, tmp_path):
    store, envs = local_envs
    full = envs["tiny"]["full_id"][:16]
    assert "exactly one of --prefix" in run_cli(["create", full], store.env, tmp_path, 2).stderr
    r = run_cli(["create", full, "--name", "a/b"], store.env, tmp_path, 2)
    assert "bad --name" in r.stderr


@pytest.mark.parametrize("point", ["hydrate.fetched", "hydrate.installed"])
def test_sigkill_then_rerun(local_envs, tmp_path, point):
    store, envs = local_envs
    full = envs["py"]["full_id"][:16]
    prefix = tmp_path / "p"
    env = {**store.env, "IMGBUILD_TEST_KILL_AT": f"{point}:1"}
    r = run_cli(["create", full, "--prefix", prefix], env, tmp_path, expect=None)
    assert r.returncode == -9, r.stderr
    assert not (prefix / "imgbuild-env.json").exists() and not prefix.exists()
    run_cli(["create", full, "--prefix", prefix], store.env, tmp_path)
    assert (prefix / "imgbuild-env.json").exists()
    assert [p.name for p in tmp_path.iterdir() if ".imgbuild-tmp-" in p.name] == []
    ok = subprocess.run([prefix / "bin/python", "-c", "import tinyfoo, imgb_hello"])
    assert ok.returncode == 0


def test_sigkill_in_place_on_a_mount_point(local_envs, tmp_path):
    """A mount point cannot be renamed: built in place, marker last; a rerun clears it."""
    store, envs = local_envs
    mnt = tmp_path / "mnt"
    _mount_tmpfs(mnt, "size=200m")
    try:
        full = envs["py"]["full_id"][:16]
        env = {**store.env, "IMGBUILD_TEST_KILL_AT": "hydrate.installed:1"}
        r = run_cli(["create", full, "--prefix", mnt], env, tmp_path, expect=None)
        assert r.returncode == -9
        assert not (mnt / "imgbuild-env.json").exists() and (mnt / ".imgbuild-partial").exists()
        run_cli(["create", full, "--prefix", mnt], store.env, tmp_path)
        assert (mnt / "imgbuild-env.json").exists() and not (mnt / ".imgbuild-partial").exists()
    finally:
        _umount(mnt)


def test_two_creators_one_env(local_envs, tmp_path):
    """Two processes create one prefix: one creates, the other waits on the lock and reuses."""
    store, envs = local_envs
    prefix = tmp_path / "shared"
    full = envs["py"]["full_id"][:16]
    procs = []
    for i in range(2):
        env = dict(os.environ, HOME=str(tmp_path / "home"), **store.env)
        env["IMGBUILD_TEST_HOLD_LOCK"] = "2"
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "imagebuilder", "create", full, "--prefix", prefix]
                + ["--json"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
        time.sleep(0.3 if i == 0 else 0)
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    results = [json.loads(o[0]) for o in outs]
    assert sorted(r["created"] for r in results) == [False, True]
    assert any("waiting for" in o[1] for o in outs), outs
    assert all(r["prefix"] == str(prefix) for r in results)


def test_create_30_times_exits_cleanly(local_envs, tmp_path):
    """py-rattler may crash at interpreter exit; the CLI must exit 0 every time."""
    store, envs = local_envs
    full = envs["tiny"]["full_id"][:16]
    codes = []
    for _ in range(30):
        r = run_cli(
            ["create", full, "--prefix", tmp_path / "p", "--force"], store.env, tmp_path, None
        )
        codes.append(r.returncode)
    assert codes == [0] * 30, codes
