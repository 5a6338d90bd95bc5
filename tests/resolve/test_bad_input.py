"""Bad input: one clear line (+ hint), the CONTRACT.md exit code, no traceback, nothing written
to the store. Every case runs without --dry-run, so a store write would show."""

from __future__ import annotations

import json
import shutil

import pytest

pytestmark = pytest.mark.rig


def _fails(cli, *args, code: int, cwd=None):
    res = cli(*args, "-q", expect=code, cwd=cwd)
    lines = res.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), res.stderr
    assert len(lines) <= 2 and (len(lines) == 1 or lines[1].startswith("  hint: ")), res.stderr
    assert res.stdout == ""
    assert cli.store_files() == [], cli.store_files()
    as_json = cli(*args, "-q", "--json", expect=code, cwd=cwd).json()["error"]
    assert as_json["message"] == lines[0].removeprefix("error: ")
    assert cli.store_files() == []
    return lines[0]


def test_unknown_conda_package(cli, rig_services):
    msg = _fails(cli, "resolve", "--conda", "nosuchpkg", "-c", rig_services.channel_url, code=3)
    assert "nosuchpkg" in msg and rig_services.channel_url in msg and "--conda" in msg


def test_no_matching_conda_version(cli, rig_services):
    msg = _fails(cli, "resolve", "--conda", "tinyfoo>=9", "-c", rig_services.channel_url, code=3)
    assert "tinyfoo" in msg and ">=9" in msg and "2.0" in msg  # says what the channel has


def test_unknown_pypi_package(cli, rig_services):
    msg = _fails(cli, "resolve", "--pypi", "nosuch-dist", "-c", rig_services.channel_url,
                 "--index-url", rig_services.index_url, code=3)  # fmt: skip
    assert "nosuch-dist" in msg and rig_services.index_url in msg


def test_unsatisfiable_conda_names_the_chain(cli, rig_services, tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("# conflicting on purpose\n--conda-pkg conflict-a\n--conda-pkg conflict-b\n")
    msg = _fails(cli, "resolve", "-r", req, "-c", rig_services.channel_url, code=4)
    assert "conflict-a" in msg and "conflict-b" in msg and "tinyfoo" in msg
    assert "requirements.txt:2" in msg and "requirements.txt:3" in msg


def test_target_glibc_too_old(cli, rig_services):
    args = ("resolve", "--conda", "needs-newglibc", "-c", rig_services.channel_url,
            "--arch", "linux-64")  # fmt: skip
    msg = _fails(cli, *args, code=4)
    assert "__glibc" in msg and "2.28" in msg
    ok = cli(*args, "--sys-pkg", "__glibc==2.99", "--dry-run", "--json").json()
    assert "needs-newglibc" in [p["name"] for p in ok["packages"]]


def test_conda_vs_pypi_conflict_names_both_sides(cli, rig_services):
    msg = _fails(cli, "resolve", "--conda", "python", "--conda", "six", "-c",
                 rig_services.channel_url, "--pypi", "imgb-conflict", "--index-url",
                 rig_services.index_url, "--arch", "linux-64", code=4)  # fmt: skip
    assert "conda provides six 1.16.0" in msg and "imgb-conflict" in msg and "six<1.0" in msg


def test_unreachable_channel_names_url_without_credentials(cli):
    msg = _fails(cli, "resolve", "--conda", "tinyfoo", "-c", "http://alice:s3cret@127.0.0.1:9/ch",
                 code=5)  # fmt: skip
    assert "http://127.0.0.1:9/ch" in msg and "s3cret" not in msg and "alice" not in msg


def test_channel_that_is_not_a_channel(cli, rig_services):
    msg = _fails(cli, "resolve", "--conda", "tinyfoo", "-c", rig_services.channel_url + "/nope",
                 code=5)  # fmt: skip
    assert "/nope" in msg and "404" in msg


def test_unreachable_index(cli, rig_services):
    msg = _fails(cli, "resolve", "--pypi", "requests", "-c", rig_services.channel_url,
                 "--index-url", "http://bob:hunter2@127.0.0.1:9/simple", code=5)  # fmt: skip
    assert "http://127.0.0.1:9/simple" in msg and "hunter2" not in msg


def test_malformed_requirements_txt(cli, tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("requests>=2\nthis is >>> not pep508\n")
    msg = _fails(cli, "resolve", "-r", req, code=1)
    assert f"{req}:2" in msg


def test_unknown_option_in_requirements_txt(cli, tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("\n--frobnicate yes\n")
    assert f"{req}:2" in _fails(cli, "resolve", "-r", req, code=1)


def test_malformed_environment_yml(cli, tmp_path):
    env = tmp_path / "environment.yml"
    env.write_text("channels:\n  - conda-forge\ndependencies:\n  - numpy\n   - bad: [indent\n")
    assert f"{env}:" in _fails(cli, "resolve", "-f", env, code=1)
    env.write_text("dependencies:\n  - python\n  - pip:\n    - ok-pkg\n    - 'bad >>> spec'\n")
    assert f"{env}:5" in _fails(cli, "resolve", "-f", env, code=1)


def test_malformed_pyproject(cli, tmp_path):
    pp = tmp_path / "pyproject.toml"
    pp.write_text('[project]\nname = "x"\ndependencies = ["ok", \n')
    assert "pyproject.toml" in _fails(cli, "resolve", "-p", pp, code=1)
    pp.write_text('[project]\nname = "x"\ndependencies = [\n  "ok",\n  "no good >>>",\n]\n')
    assert f"{pp}:5" in _fails(cli, "resolve", "-p", pp, code=1)


def test_unknown_arch(cli):
    msg = _fails(cli, "resolve", "--conda", "tinyfoo", "--arch", "win-64", code=1)
    assert "win-64" in msg


def test_empty_request(cli, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "empty request" in _fails(cli, "resolve", code=1, cwd=empty)
    (empty / "requirements.txt").write_text("# nothing yet\n")
    assert "empty request" in _fails(cli, "resolve", code=1, cwd=empty)


def test_bad_alias_fails_before_solving(cli, rig_services):
    msg = _fails(cli, "resolve", "--conda", "tinyfoo", "-c", rig_services.channel_url,
                 "--alias", "Not A Name", code=1)  # fmt: skip
    assert "Not A Name" in msg


def test_external_resolver_absent(cli, rig_services):
    """micromamba/conda/mamba are not installable on these machines: only the absent path."""
    for tool in ("micromamba", "conda", "mamba"):
        assert shutil.which(tool) is None, f"{tool} is installed: test the real backend instead"
        msg = _fails(cli, "resolve", "--conda", "tinyfoo", "-c", rig_services.channel_url,
                     "--resolver", tool, code=2, cwd=None)  # fmt: skip
        assert f"`{tool}` is not on PATH" in msg


def test_uv_resolver_refuses_conda_specs(cli, rig_services):
    msg = _fails(cli, "resolve", "--conda", "tinyfoo", "-c", rig_services.channel_url,
                 "--resolver", "uv", code=2)  # fmt: skip
    assert "--resolver uv" in msg


def test_error_json_shape(cli):
    res = cli("resolve", "--conda", "tinyfoo", "--arch", "nope-64", "--json", expect=1)
    assert set(json.loads(res.stdout)["error"]) == {"kind", "message", "hint"}
