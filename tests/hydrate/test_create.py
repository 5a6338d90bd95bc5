"""`imgbuild create` from an S3 store with no channel or index reachable."""

from __future__ import annotations

import json
import subprocess
import time

from hydhelp import run_cli


def _imgb_cli(prefix) -> dict[str, list[str]]:
    out = subprocess.run([str(prefix / "bin" / "imgb-cli")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    got: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        k, _, v = line.partition("=")
        got.setdefault(k, []).append(v)
    return got


def test_mixed_env_offline_from_s3(s3_envs, sources, module_home, tmp_path):
    store, envs = s3_envs
    assert not sources.up  # the channel and the index are stopped
    prefix = tmp_path / "envs" / "mixed"
    r = run_cli(["create", "hyd/mixed:v1", "--prefix", prefix, "--json"], store.env, module_home)
    out = r.json()
    assert out["created"] is True and out["method"] == "packages"
    assert out["full_id"] == envs["mixed"]["full_id"]
    assert out["python"] == str(prefix / "bin" / "python")

    code = (
        "import tinyfoo, imgb_hello, imgb_uses_six, six, ssl, sqlite3; print(imgb_hello.__file__)"
    )
    py = subprocess.run([prefix / "bin/python", "-c", code], capture_output=True, text=True)
    assert py.returncode == 0, py.stderr
    assert py.stdout.startswith(str(prefix / "lib/python3.11/site-packages/"))

    # The compiled test package: binary (libimgb) and text (etc/imgb.conf) prefix replacement.
    got = _imgb_cli(prefix)
    assert got["prefix"] == [str(prefix)]
    assert got["conf"] == [str(prefix)]

    # A wheel's script runs with the env's python.
    script = prefix / "bin" / "imgb-hello"
    assert script.read_text().splitlines()[0] == f"#!{prefix}/bin/python"
    assert subprocess.run([script], capture_output=True).returncode == 0

    marker = json.loads((prefix / "imgbuild-env.json").read_text())
    assert marker["schema"] == "imgbuild/prefix/v1"
    assert {marker[k] for k in ("req_id", "full_id", "env_name", "arch")} == {
        envs["mixed"][k] for k in ("req_id", "full_id", "env_name", "arch")
    }
    # conda-meta: one record per conda package, with channel URLs and no machine-local paths.
    meta = sorted((prefix / "conda-meta").glob("*.json"))
    conda_names = {p["name"] for p in envs["mixed"]["packages"] if p["kind"] == "conda"}
    assert {json.loads(m.read_text())["name"] for m in meta} == conda_names
    rec = json.loads(next(m for m in meta if m.name.startswith("imgb-cli-")).read_text())
    assert rec["url"].startswith(sources.channel_url)
    assert "extracted_package_dir" not in rec and str(module_home) not in json.dumps(rec)
    assert all(m.stat().st_mode & 0o777 == 0o644 for m in meta)
    # no hidden temp folders left next to the prefix
    assert sorted(p.name for p in prefix.parent.iterdir()) == [".mixed.imgbuild-lock", "mixed"]


def test_rerun_is_a_fast_noop(s3_envs, module_home, tmp_path):
    store, envs = s3_envs
    prefix = tmp_path / "p"
    run_cli(["create", "hyd/tiny", "--prefix", prefix], store.env, module_home)
    before = (prefix / "imgbuild-env.json").read_text()
    full16 = envs["tiny"]["full_id"][:16]
    t0 = time.monotonic()
    r = run_cli(["create", full16, "--prefix", prefix, "--json"], store.env, module_home)
    took = time.monotonic() - t0
    assert r.json()["created"] is False
    assert (prefix / "imgbuild-env.json").read_text() == before
    assert took < 3.0, f"no-op create took {took:.1f}s"
    # by alias too (the alias is read, nothing installed)
    assert run_cli(["create", "hyd/tiny", "--prefix", prefix, "--json"], store.env, module_home)


def test_name_puts_env_under_home(s3_envs, module_home):
    store, envs = s3_envs
    r = run_cli(["create", "hyd/tiny", "--name", "tiny-one", "--json"], store.env, module_home)
    prefix = module_home / ".imgbuild" / "envs" / "tiny-one"
    assert r.json()["prefix"] == str(prefix)
    assert (prefix / "share" / "zoneinfo").is_dir()
    assert r.stdout.strip().endswith("}")
    plain = run_cli(["create", "hyd/tiny", "--name", "tiny-one"], store.env, module_home)
    assert plain.stdout.strip() == str(prefix)  # the prefix on stdout, messages on stderr


def test_other_platforms_are_refused(s3_envs, module_home, tmp_path):
    store, envs = s3_envs
    for key, arch in (("aarch64", "linux-aarch64"), ("osx", "osx-arm64")):
        prefix = tmp_path / key
        r = run_cli(
            ["create", envs[key]["full_id"][:16], "--prefix", prefix], store.env, module_home, 1
        )
        assert f"cannot create a {arch} environment on linux-64 here" in r.stderr
        assert "imgbuild push" in r.stderr
        assert not prefix.exists()
