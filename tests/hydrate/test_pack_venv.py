"""Packs (relocatable one-archive creation), venvs on a given python, Jupyter kernels."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydhelp import MIXED, Store, resolve, run_cli


@pytest.fixture(scope="module")
def envs(sources, module_home, tmp_path_factory):
    root = tmp_path_factory.mktemp("packstore") / "store"
    store = Store(str(root), {"IMGBUILD_STORE": str(root)})
    out = {
        "mixed": resolve(sources, store, module_home, *MIXED, alias="hyd/mixed:v1"),
        "venv": resolve(
            sources, store, module_home, "--pypi", "imgb-hello", "--python", "3.11",
            "--python-from-base",
        ),
        "venv312": resolve(
            sources, store, module_home, "--pypi", "imgb-hello", "--python", "3.12",
            "--python-from-base",
        ),
        "sdist": resolve(
            sources, store, module_home, "--conda", "python 3.11.*", "--pypi", "imgb-sdist"
        ),
    }  # fmt: skip
    sources.stop()
    return store, out


def test_pack_then_create_from_pack(envs, module_home, tmp_path):
    store, e = envs
    ref = e["mixed"]["full_id"][:16]
    r = run_cli(["pack", ref, "--json"], store.env, module_home).json()
    key = f"packs/{ref}/linux-64.tar.zst"
    assert r["key"] == key and r["existing"] is False and r["files_to_relocate"] >= 3
    pack = Path(store.url) / key
    first = hashlib.sha256(pack.read_bytes()).hexdigest()
    assert run_cli(["pack", ref, "--json"], store.env, module_home).json()["existing"] is True

    prefix = tmp_path / "a" / ("long-" * 12) / "env"
    out = run_cli(["create", ref, "--prefix", prefix, "--from-pack", "--json"], store.env, tmp_path)
    assert out.json()["method"] == "pack"
    cli = subprocess.run([prefix / "bin/imgb-cli"], capture_output=True, text=True).stdout
    assert f"prefix={prefix}\n" in cli and f"conf={prefix}\n" in cli
    code = "import tinyfoo, imgb_hello, six, sys; print(sys.prefix)"
    py = subprocess.run([prefix / "bin/python", "-c", code], capture_output=True, text=True)
    assert py.stdout.strip() == str(prefix), py.stderr
    for script in ("imgb-hello", "tinyfoo"):
        assert subprocess.run([prefix / "bin" / script], capture_output=True).returncode == 0
    marker = json.loads((prefix / "imgbuild-env.json").read_text())
    assert marker["method"] == "pack"
    assert b"_imgbuild_pack_prefix" not in b"".join(
        p.read_bytes() for p in prefix.rglob("*") if p.is_file() and not p.is_symlink()
    )

    # the same env packed again from a cold machine gives the same bytes
    pack.unlink()
    run_cli(["pack", ref], store.env, tmp_path / "cold")
    assert hashlib.sha256(pack.read_bytes()).hexdigest() == first


def test_from_pack_errors(envs, module_home, tmp_path):
    store, e = envs
    ref = e["mixed"]["full_id"][:16]
    run_cli(["pack", ref], store.env, module_home)
    too_long = tmp_path / ("x" * 250) / "env"
    r = run_cli(["create", ref, "--prefix", too_long, "--from-pack"], store.env, tmp_path, 1)
    assert "has room for" in r.stderr and "--no-pack" in r.stderr
    assert not too_long.exists()
    venv = f"{e['venv']['req_id']}:{e['venv']['full_id']}"  # same wheels for 3.11 and 3.12
    r = run_cli(["create", venv, "--prefix", tmp_path / "v", "--from-pack"], store.env, tmp_path, 3)
    assert "no pack of" in r.stderr and "imgbuild pack" in r.stderr
    r = run_cli(["pack", venv], store.env, tmp_path, 1)
    assert "no conda python" in r.stderr


def test_venv_on_a_given_python(envs, tmp_path):
    store, e = envs
    prefix = tmp_path / "venv"
    ref = f"{e['venv']['req_id']}:{e['venv']['full_id']}"
    out = run_cli(
        ["create", ref, "--prefix", prefix, "--python", sys.executable, "--json"],
        store.env,
        tmp_path,
    ).json()
    assert out["method"] == "venv" and out["python"] == str(prefix / "bin/python")
    assert "include-system-site-packages = false" in (prefix / "pyvenv.cfg").read_text()
    code = "import sys, imgb_hello; print(sys.prefix); print(imgb_hello.__file__)"
    py = subprocess.run([prefix / "bin/python", "-c", code], capture_output=True, text=True)
    assert py.stdout.splitlines()[0] == str(prefix), py.stderr
    assert py.stdout.splitlines()[1].startswith(str(prefix / "lib/python3.11/site-packages"))
    hello = prefix / "bin/imgb-hello"
    assert hello.read_text().startswith(f"#!{prefix}/bin/python\n")
    assert subprocess.run([hello], capture_output=True).returncode == 0
    # resolved for another python: refused before anything is written
    r = run_cli(
        [
            "create",
            f"{e['venv312']['req_id']}:{e['venv312']['full_id']}",
            "--prefix",
            tmp_path / "v2",
            "--python",
        ]
        + [sys.executable],
        store.env,
        tmp_path,
        1,
    )
    assert "was resolved for python 3.12" in r.stderr and not (tmp_path / "v2").exists()
    # --python with a conda python env is a usage mistake
    r = run_cli(
        ["create", e["mixed"]["full_id"][:16], "--prefix", tmp_path / "m", "--python"]
        + [sys.executable],
        store.env,
        tmp_path,
        1,
    )
    assert "--python applies only" in r.stderr


def test_jupyter_kernel(envs, module_home, tmp_path):
    store, e = envs
    prefix = tmp_path / "k"
    r = run_cli(
        ["create", "hyd/mixed:v1", "--prefix", prefix, "--jupyter", "--json"], store.env, tmp_path
    )
    kernel = r.json()["kernel"]
    assert kernel["name"] == "imgbuild_hyd_mixed_v1"
    spec = json.loads(
        (tmp_path / ".local/share/jupyter/kernels/imgbuild_hyd_mixed_v1/kernel.json").read_text()
    )
    assert spec["argv"][:3] == [str(prefix / "bin/python"), "-m", "ipykernel_launcher"]
    assert spec["env"]["CONDA_PREFIX"] == str(prefix)
    assert "does not contain ipykernel" in r.stderr
    by_id = run_cli(
        ["create", e["mixed"]["full_id"][:16], "--prefix", prefix, "--jupyter", "--json"],
        store.env,
        tmp_path,
    ).json()
    assert by_id["kernel"]["name"] == f"imgbuild_{e['mixed']['full_id'][:16]}"
    assert by_id["created"] is False


def test_env_with_an_sdist_gets_its_built_wheel(envs, tmp_path):
    """Sources are built once at cache time (builds/<source sha256>.json); create installs
    the built wheel."""
    store, e = envs
    assert [p["source"] for p in e["sdist"]["packages"] if p["kind"] == "pypi"] == ["sdist"]
    prefix = tmp_path / "s"
    run_cli(["create", e["sdist"]["full_id"][:16], "--prefix", prefix], store.env, tmp_path)
    code = "import imgb_sdist; print(imgb_sdist.__file__)"
    py = subprocess.run([prefix / "bin/python", "-c", code], capture_output=True, text=True)
    assert py.stdout.startswith(str(prefix / "lib/python3.11/site-packages/imgb_sdist")), py.stderr
