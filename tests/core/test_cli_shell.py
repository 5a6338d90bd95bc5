"""The CLI shell: version, help, exit codes and JSON errors (CONTRACT.md)."""

import json
import subprocess
import sys


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "imagebuilder", *args], capture_output=True, text=True, timeout=60
    )


def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0 and "imgbuild" in r.stdout
    r = run("--help")
    assert r.returncode == 0
    for verb in (
        "resolve",
        "show",
        "ls",
        "alias",
        "create",
        "push",
        "run",
        "sbom",
        "verify",
        "gc",
        "config",
    ):
        assert verb in r.stdout


def test_unknown_verb_is_usage_error():
    r = run("frobnicate")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


def test_bad_env_reference_json_error():
    r = run("show", "Not_A_Name!", "--json")
    assert r.returncode in (1, 2)
    err = json.loads(r.stdout)["error"]
    assert err["message"] and "kind" in err
    assert "Traceback" not in r.stderr
