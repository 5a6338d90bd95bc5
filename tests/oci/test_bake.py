"""Bake end to end: envs from the local channel in a store, `imgbuild push/image` in a
subprocess (rattler never runs in this process), checked with skopeo, umoci + chroot and
podman."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from ocikit import make_wheel, run_cli

from imagebuilder.bake import BakeOptions, bake
from imagebuilder.ids import AliasRef, short
from imagebuilder.store.aliases import set_alias
from imagebuilder.store.local import LocalStore

IMPORTS = "import tinyfoo, six, imgb_uses_six; print('ok', six.__version__)"


def skopeo_inspect(ref: str, raw: bool = False) -> dict:
    args = ["skopeo", "inspect", *(["--raw"] if raw else []), ref]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def mixed_env(envs, store, wheels, arch="linux-64"):
    return envs.make(store, ["python", "tinyfoo", "six"], arch, wheels=[wheels["imgb-uses-six"]])


def push(env, store, isolated, *args, expect=0, extra_env=None):
    e = {**isolated, **(extra_env or {})}
    return run_cli(["push", short(env.full_id), "--store", store.root, "--json", *args], e, expect)


def test_labels_umoci_chroot_runs_mixed_env(envs, wheels, tmp_path, isolated, base_oci):
    store = LocalStore(tmp_path / "store")
    env = mixed_env(envs, store, wheels)
    cfg = {"IMGBUILD_BASE_IMAGE": base_oci, "IMGBUILD_COMPRESSION": "gzip"}  # umoci reads gzip
    out = push(env, store, isolated, "--to", f"oci:{tmp_path / 'oci'}", extra_env=cfg).stdout
    res = json.loads(out)
    tag = short(env.full_id)
    assert res["tags"] == [tag]  # the configured base and compression: no variant suffix
    info = skopeo_inspect(f"oci:{tmp_path / 'oci'}:{tag}")
    labels = info["Labels"]
    assert labels["dev.imgbuild.full_id"] == env.full_id
    assert labels["dev.imgbuild.req_id"] == env.req_id
    assert labels["dev.imgbuild.env_name"] == env.name
    assert labels["org.opencontainers.image.created"] == "1970-01-01T00:00:00Z"
    assert labels["org.opencontainers.image.base.digest"].startswith("sha256:")
    assert info["Digest"] == res["digest"]
    assert f"IMGBUILD_ENV_ID={env.short_id}" in info["Env"]
    assert any(e.startswith("PATH=/opt/imgbuild/env/bin:") for e in info["Env"])
    raw = skopeo_inspect(f"oci:{tmp_path / 'oci'}:{tag}", raw=True)
    assert raw["annotations"]["dev.imgbuild.full_id"] == env.full_id

    bundle = tmp_path / "bundle"
    r = subprocess.run(
        ["umoci", "unpack", "--image", f"{tmp_path / 'oci'}:{tag}", str(bundle)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    rootfs = bundle / "rootfs"
    meta = rootfs / "opt/imgbuild/env/conda-meta"
    assert all(oct(p.stat().st_mode & 0o777) == "0o644" for p in meta.glob("*.json"))
    assert (
        json.loads((rootfs / "opt/imgbuild/env/imgbuild-env.json").read_text())["full_id"]
        == env.full_id
    )
    r = subprocess.run(
        [
            # bwrap = chroot plus /proc (glibc finds $ORIGIN, python's RUNPATH, there)
            shutil.which("bwrap") or "/usr/bin/bwrap",
            *("--bind", str(rootfs), "/", "--proc", "/proc", "--dev", "/dev"),
            "/opt/imgbuild/env/bin/python",
            "-c",
            IMPORTS,
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/opt/imgbuild/env/bin:/usr/bin:/bin"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")
    # The wheel's console script points at the image's python.
    script = (rootfs / "opt/imgbuild/env/bin/imgb-uses-six-hello").read_text()
    assert script.startswith("#!/opt/imgbuild/env/bin/python")
    # Deterministic .pyc were made for noarch and PyPI code (the env's python runs here).
    pyc = list((rootfs / "opt/imgbuild/env/lib/python3.11/site-packages/__pycache__").glob("*.pyc"))
    assert any(p.name.startswith("imgb_uses_six") for p in pyc)
    assert all(p.read_bytes()[4:8] == b"\x01\x00\x00\x00" for p in pyc)  # unchecked-hash flag


def test_same_env_two_fresh_stores_other_clock_same_digest(envs, wheels, tmp_path, isolated):
    digests = []
    for i, (tz, days) in enumerate((("UTC", 0), ("Asia/Tokyo", 400))):
        store = LocalStore(tmp_path / f"store{i}")
        env = mixed_env(envs, store, wheels)
        hook = tmp_path / f"clock{i}"
        hook.mkdir()
        # Every later clock read in the CLI process is shifted by `days`; SOURCE_DATE_EPOCH unset.
        (hook / "sitecustomize.py").write_text(
            f"import time\n_s = {days} * 86400\n_t, _n = time.time, time.time_ns\n"
            "time.time = lambda: _t() + _s\ntime.time_ns = lambda: _n() + _s * 10**9\n"
        )
        e = {
            **isolated,
            "TZ": tz,
            "PYTHONPATH": str(hook),
            "IMGBUILD_CACHE_DIR": str(tmp_path / f"cache{i}"),
        }
        res = json.loads(push(env, store, e, "--to", f"oci:{tmp_path / f'oci{i}'}").stdout)
        digests.append(res["digest"])
        assert res["layers_built"] > 0 and res["layers_reused"] == 0
    assert digests[0] == digests[1]


def test_one_leaf_change_shares_every_other_layer(envs, wheels, tmp_path, isolated):
    store = LocalStore(tmp_path / "store")
    a = envs.make(store, ["python", "tinyfoo", "six"], wheels=[wheels["imgb-leaf-1"]])
    b = envs.make(store, ["python", "tinyfoo", "six"], wheels=[wheels["imgb-leaf-2"]])
    la = json.loads(push(a, store, isolated, "--to", f"oci:{tmp_path / 'oci'}").stdout)
    lb = json.loads(push(b, store, isolated, "--to", f"oci:{tmp_path / 'oci'}").stdout)
    assert lb["layers_built"] == 1  # only the leaf's layer was made again
    ma = skopeo_inspect(f"oci:{tmp_path / 'oci'}:{la['tags'][0]}", raw=True)["layers"]
    mb = skopeo_inspect(f"oci:{tmp_path / 'oci'}:{lb['tags'][0]}", raw=True)["layers"]
    da, db = [x["digest"] for x in ma], [x["digest"] for x in mb]
    assert len(da) == len(db)
    differ = [i for i, (x, y) in enumerate(zip(da, db, strict=True)) if x != y]
    assert len(differ) == 2 and differ[-1] == len(da) - 1  # the leaf's layer and the metadata layer


def test_aarch64_image_on_x86_64(envs, tmp_path, isolated):
    store = LocalStore(tmp_path / "store")
    env = envs.make(store, ["python", "tinyfoo"], "linux-aarch64")
    res = json.loads(push(env, store, isolated, "--to", f"oci:{tmp_path / 'oci'}").stdout)
    info = skopeo_inspect(f"oci:{tmp_path / 'oci'}:{res['tags'][0]}")
    assert info["Architecture"] == "arm64" and info["Os"] == "linux"


def test_multi_arch_alias_pushes_an_index(envs, tmp_path, isolated):
    store = LocalStore(tmp_path / "store")
    x86 = envs.make(store, ["python", "tinyfoo"], "linux-64")
    arm = envs.make(store, ["python", "tinyfoo"], "linux-aarch64")
    ref = AliasRef("multi", "stable")
    set_alias(store, ref, x86)
    set_alias(store, ref, arm)
    r = run_cli(
        [
            "push",
            "multi:stable",
            "--store",
            store.root,
            "--to",
            f"oci:{tmp_path / 'oci'}",
            "--json",
        ],
        isolated,
    )
    res = json.loads(r.stdout)
    assert "multi--stable" in res["tags"]
    raw = skopeo_inspect(f"oci:{tmp_path / 'oci'}:multi--stable", raw=True)
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert sorted(m["platform"]["architecture"] for m in raw["manifests"]) == ["amd64", "arm64"]
    img = run_cli(
        [
            "image",
            "multi:stable",
            "--store",
            store.root,
            "--to",
            f"oci:{tmp_path / 'o2'}",
            "--json",
        ],
        isolated,
    )
    assert json.loads(img.stdout)["digest"] == res["digest"]
    assert not (tmp_path / "o2").exists()  # `image` writes nothing


def test_docker_archive_podman_load_and_run(envs, wheels, tmp_path, isolated, base_oci, podman_env):
    store = LocalStore(tmp_path / "store")
    env = mixed_env(envs, store, wheels)
    tar = tmp_path / "env.tar"
    res = json.loads(
        push(env, store, isolated, "--base", base_oci, "--to", f"docker-archive:{tar}").stdout
    )
    tag = res["tags"][0]
    assert tag.startswith(short(env.full_id) + "-") and len(tag) == 16 + 9  # variant suffix
    r = subprocess.run(
        ["podman", "load", "-i", str(tar)], capture_output=True, text=True, env=podman_env
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        ["podman", "run", "--rm", f"imgbuild:{tag}", "/opt/imgbuild/env/bin/python", "-c", IMPORTS],
        capture_output=True,
        text=True,
        env=podman_env,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")


def test_bad_inputs(envs, tmp_path, isolated, base_oci):
    store = LocalStore(tmp_path / "store")
    osx = envs.make(store, ["tinyfoo"], "osx-arm64")
    r = push(osx, store, isolated, "--to", f"oci:{tmp_path / 'o'}", expect=1)
    assert "images run Linux" in r.stdout
    arm = envs.make(store, ["tinyfoo"], "linux-aarch64")
    r = push(arm, store, isolated, "--base", base_oci, "--to", f"oci:{tmp_path / 'o'}", expect=1)
    assert "linux/amd64" in r.stdout and "linux/arm64" in r.stdout
    x86 = envs.make(store, ["tinyfoo"], "linux-64")
    push(
        x86,
        store,
        isolated,
        "--base",
        f"oci:{tmp_path / 'nope'}:x",
        "--to",
        f"oci:{tmp_path / 'o'}",
        expect=3,
    )
    assert not (tmp_path / "o").exists()


def test_file_collision_is_a_conflict(envs, tmp_path, isolated):
    store = LocalStore(tmp_path / "store")
    clash = make_wheel(
        tmp_path / "w",
        "tinyfoo-fork",
        "1.0",
        {"tinyfoo/__init__.py": "FORK = 1\ndef main(): pass\n"},
    )
    env = envs.make(store, ["python", "tinyfoo"], wheels=[clash])
    r = push(env, store, isolated, "--to", f"oci:{tmp_path / 'o'}", expect=4)
    assert "tinyfoo/__init__.py" in r.stdout


def test_bake_value_without_sink(envs, tmp_path, monkeypatch):
    """The value alone: same digest twice, the second time from the layer index only."""
    monkeypatch.setenv("IMGBUILD_CACHE_DIR", str(tmp_path / "cache"))
    store = LocalStore(tmp_path / "store")
    env = envs.make(store, ["python", "tinyfoo"])
    first = bake([env], store, BakeOptions())
    second = bake([env], store, BakeOptions())
    assert first.digest == second.digest
    assert second.layers_built == 0 and second.layers_reused == first.layers_built
    for layer in first.artifact.layers:
        assert store.exists("blobs/sha256/" + layer.descriptor.hex)
    assert sys.modules.get("rattler") is None  # staging ran rattler in a child process


@pytest.fixture
def podman_env(tmp_path) -> dict[str, str]:
    """podman settings that work on this kernel (LOCAL-SERVICES.md): runc, cgroupfs, vfs."""
    d = tmp_path / "podman"
    d.mkdir()
    (d / "containers.conf").write_text(
        '[containers]\ndefault_ulimits=["nofile=1024:1024","nproc=1024:1024"]\nnetns="none"\n'
        '[engine]\nruntime="runc"\ncgroup_manager="cgroupfs"\nevents_logger="file"\n'
    )
    (d / "storage.conf").write_text(
        f'[storage]\ndriver="vfs"\ngraphroot="{d}/graph"\nrunroot="{d}/run"\n'
    )
    (d / "registries.conf").write_text("")
    env = dict(os.environ)
    env.update(
        CONTAINERS_CONF=str(d / "containers.conf"),
        CONTAINERS_STORAGE_CONF=str(d / "storage.conf"),
        CONTAINERS_REGISTRIES_CONF=str(d / "registries.conf"),
    )
    yield env
    subprocess.run(["podman", "system", "reset", "-f"], env=env, capture_output=True)


def test_identical_duplicate_file_is_allowed_also_from_known_layers(
    envs, channel, tmp_path, isolated
):
    import tarfile

    (archive,) = (channel / "noarch").glob("six-1.16.0-*.tar.bz2")
    with tarfile.open(archive) as t:
        six_py = t.extractfile("site-packages/six.py").read().decode()
    copy = make_wheel(tmp_path / "w", "six-copy", "1.0", {"six.py": six_py})
    store = LocalStore(tmp_path / "store")
    env = envs.make(store, ["python", "six"], wheels=[copy])
    first = json.loads(push(env, store, isolated, "--to", f"oci:{tmp_path / 'o1'}").stdout)
    again = json.loads(push(env, store, isolated, "--to", f"oci:{tmp_path / 'o2'}").stdout)
    assert again["layers_built"] == 0 and again["digest"] == first["digest"]


def test_bare_push_without_a_request_here_is_a_usage_error(tmp_path, isolated):
    r = run_cli(
        ["push", "--store", tmp_path / "s", "--to", f"oci:{tmp_path / 'o'}"],
        isolated,
        2,
        cwd=tmp_path,
    )
    assert "name the environment" in r.stderr
