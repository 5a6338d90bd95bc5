"""`imgbuild resolve` end to end into the rig's S3: >= 20 conda + PyPI packages cached, a second
resolve downloads nothing (GETs counted at the channel and the index), and 8 resolves at once
on overlapping requests all succeed and leave a store that verifies."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, run_imgbuild


@pytest.fixture(scope="module")
def index(served, tmp_path_factory):
    """The rig's PyPI files served by ci/pypi/serve.py, its access log kept to count GETs."""
    log = tmp_path_factory.mktemp("index") / "access.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "ci/pypi/serve.py"), "--root", str(served.root / "pypi-src"),
             "--host", "127.0.0.1", "--port", "0"],
            stdout=subprocess.PIPE, stderr=err, text=True,
        )  # fmt: skip
    url = proc.stdout.readline().strip()
    proc.log = log
    proc.url = url
    yield proc
    proc.terminate()
    proc.wait(timeout=10)


def _wheel_gets(index) -> int:
    return sum(
        1 for ln in Path(index.log).read_text().splitlines() if ".whl " in ln and "GET" in ln
    )


def _resolve(served, index, store_url, s3, home, *specs, timeout=600):
    args = ["resolve", "-c", served.url, "--index-url", index.url, "--store", store_url, "--json"]
    for s in specs:
        args += ["--pypi", s[5:]] if s.startswith("pypi:") else ["--conda", s]
    env = {**s3.env(), "HOME": str(home), "IMGBUILD_CACHE_DIR": str(home / "cache")}
    return run_imgbuild(*args, env=env, timeout=timeout)


REQUEST = ("python=3.11", "tinybar", "packaging", "pypi:requests", "pypi:imgb-hello", "pypi:attrs")


def test_resolve_caches_then_second_resolve_downloads_nothing(served, index, s3, s3_url, tmp_path):
    served.reset()
    before = _wheel_gets(index)
    r = _resolve(served, index, s3_url, s3, tmp_path / "h1", *REQUEST)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    kinds = [p["kind"] for p in out["packages"]]
    assert len(kinds) >= 20 and {"conda", "pypi"} <= set(kinds), kinds
    assert served.package_gets() == kinds.count("conda")
    assert _wheel_gets(index) - before == kinds.count("pypi")
    # same request again, from a fresh machine (empty local cache): nothing is downloaded
    served.reset()
    before = _wheel_gets(index)
    r = _resolve(served, index, s3_url, s3, tmp_path / "h2", *REQUEST)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)["full_id"] == out["full_id"]
    assert served.package_gets() == 0
    assert _wheel_gets(index) - before == 0
    v = run_imgbuild("verify", out["env_name"], "--json", "--store", s3_url, env=s3.env())
    assert v.returncode == 0, v.stdout + v.stderr
    assert json.loads(v.stdout)["objects"] == len(kinds)


def test_eight_resolves_at_once_overlapping(served, index, s3, s3_url, tmp_path):
    requests = [
        ("python=3.11", "tinybar"),
        ("python=3.11", "tinybar"),  # identical: both must succeed, one env record
        ("python=3.11", "six", "pypi:requests"),
        ("python=3.11", "packaging", "pypi:requests", "pypi:attrs"),
        ("python=3.11", "tinybar", "pypi:imgb-hello"),
        ("python=3.11", "idna", "six"),
        ("python=3.11", "pypi:imgb-uses-six"),
        ("python=3.11", "tinybar", "packaging", "pypi:requests"),
    ]
    procs = []
    for i, req in enumerate(requests):
        args = ["resolve", "-c", served.url, "--index-url", index.url, "--store", s3_url, "--json"]
        for s in req:
            args += ["--pypi", s[5:]] if s.startswith("pypi:") else ["--conda", s]
        home = tmp_path / f"h{i}"
        env = {**os.environ, **s3.env(), "HOME": str(home), "IMGBUILD_CACHE_DIR": str(home / "c")}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "imagebuilder", *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )  # fmt: skip
        )
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [o[1][-800:] for o in outs]
    ids = {json.loads(o[0])["env_name"] for o in outs}
    assert len(ids) == 7
    v = run_imgbuild("verify", "--json", "--store", s3_url, env=s3.env())
    assert v.returncode == 0, v.stdout + v.stderr
    for name in ids:
        v = run_imgbuild("verify", name, "--json", "--store", s3_url, env=s3.env())
        assert v.returncode == 0 and json.loads(v.stdout)["problems"] == [], v.stdout
