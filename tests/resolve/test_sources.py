"""Packages whose identity the resolver computes itself: md5-only conda records (sha256 by
download) and PyPI sources (git commit, local tree)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import textwrap

import pytest

from imagebuilder.resolve.sources import tree_sha256

pytestmark = pytest.mark.rig


def _md5_only(folder, subdir: str, filename: str, md5: str | None = None) -> str:
    """Drop sha256 from one record of repodata.json (and the files rattler would prefer)."""
    path = folder / subdir / "repodata.json"
    data = json.loads(path.read_text())
    key = "packages.conda" if filename.endswith(".conda") else "packages"
    rec = data[key][filename]
    real = rec.pop("sha256")
    if md5:
        rec["md5"] = md5
    path.write_text(json.dumps(data))
    for extra in ("repodata.json.zst", "repodata.json.bz2", "repodata_shards.msgpack.zst"):
        (folder / subdir / extra).unlink(missing_ok=True)
    shutil.rmtree(folder / subdir / "shards", ignore_errors=True)
    return real


def test_md5_only_record_gets_its_sha256(cli, channel_copy):
    server, folder = channel_copy
    name = next(p.name for p in (folder / "noarch").glob("tinyfoo-1.1-*"))
    real = _md5_only(folder, "noarch", name)
    assert real == hashlib.sha256((folder / "noarch" / name).read_bytes()).hexdigest()
    doc = cli("resolve", "--conda", "tinyfoo==1.1", "-c", server.url, "--arch", "linux-64",
              "--json", "--dry-run").json()  # fmt: skip
    tinyfoo = next(p for p in doc["packages"] if p["name"] == "tinyfoo")
    assert tinyfoo["sha256"] == real and tinyfoo["md5"]
    assert f"/noarch/{name}" in server.package_gets()  # downloaded once to hash it


def test_md5_mismatch_is_an_integrity_error(cli, channel_copy):
    server, folder = channel_copy
    name = next(p.name for p in (folder / "noarch").glob("tinyfoo-1.1-*"))
    _md5_only(folder, "noarch", name, md5="0" * 32)
    res = cli("resolve", "--conda", "tinyfoo==1.1", "-c", server.url, "--arch", "linux-64",
              "--json", expect=6)  # fmt: skip
    assert "md5" in res.json()["error"]["message"] and name in res.json()["error"]["message"]
    assert cli.store_files() == []


def _project(folder, name: str, version: str):
    (folder / name.replace("-", "_")).mkdir(parents=True)
    (folder / name.replace("-", "_") / "__init__.py").write_text(f"VERSION = {version!r}\n")
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=61"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{name}"
            version = "{version}"
            dependencies = ["six"]
            """
        )
    )


def test_git_and_local_path_sources(cli, rig_services, tmp_path):
    local = tmp_path / "localpkg"
    _project(local, "localpkg", "0.3")
    repo = tmp_path / "gitpkg"
    _project(repo, "gitpkg", "1.2")
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "init"], check=True)
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()

    args = ("resolve", "--pypi", "./localpkg", "--pypi", f"gitpkg @ git+file://{repo}",
            "--python-from-base", "--python", "3.11", "--index-url", rig_services.index_url,
            "--arch", "linux-64", "--json", "--dry-run")  # fmt: skip
    doc = cli(*args, cwd=tmp_path).json()
    pkgs = {p["name"]: p for p in doc["packages"]}
    assert set(pkgs) == {"localpkg", "gitpkg", "six"}
    g = pkgs["gitpkg"]
    assert g["source"] == "git" and g["subdir"] == "source" and g["version"] == "1.2"
    assert g["sha256"] == hashlib.sha256(f"git:{commit}".encode()).hexdigest()
    assert g["url"] == f"git+file://{repo}@{commit}"
    p = pkgs["localpkg"]
    tree = tree_sha256(local)
    assert p["source"] == "path" and p["version"] == "0.3" and p["sha256"] == tree
    assert p["url"] == local.as_uri()
    # The identity follows the content: same tree, same full_id; a changed file, a new one.
    assert cli(*args, cwd=tmp_path).json()["full_id"] == doc["full_id"]
    (local / "localpkg" / "__init__.py").write_text("VERSION = 'changed'\n")
    assert cli(*args, cwd=tmp_path).json()["full_id"] != doc["full_id"]
