"""Aliases through the CLI and the store: mutable/immutable tags, --force, multi-arch, and the
race of several writers on one alias on the real seaweedfs server."""

import json
import os
import subprocess
import sys
import time

from helpers import fake_env, run_imgbuild

from imagebuilder.errors import CONFLICT
from imagebuilder.store.envs import put_env


def _imgbuild(store_url, *args, env=None):
    return run_imgbuild(*args, "--store", store_url, env=env)


def test_mutable_immutable_force_and_multiarch(s3, s3_objstore, s3_url):
    e1, e2 = fake_env("a1"), fake_env("a2")
    mac = fake_env("m1", arch="osx-arm64")
    for e in (e1, e2, mac):
        put_env(s3_objstore, e)
    env = s3.env()
    # mutable tag: moves freely, history kept
    assert _imgbuild(s3_url, "alias", e1.name, "team/nlp", env=env).returncode == 0
    r = _imgbuild(s3_url, "alias", e2.name, "team/nlp:latest", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)
    assert rec["platforms"]["linux-64"]["full_id"] == e2.full_id
    assert len(rec["history"]) == 2 and rec["history"][1]["previous"]["full_id"] == e1.full_id
    # immutable tag: first set ok, moving it refused (exit 4, clear message), --force moves it
    assert _imgbuild(s3_url, "alias", e1.name, "team/nlp:v1", env=env).returncode == 0
    r = _imgbuild(s3_url, "alias", e2.name, "team/nlp:v1", env=env)
    assert r.returncode == CONFLICT
    assert "immutable" in r.stderr and "Traceback" not in r.stderr
    assert _imgbuild(s3_url, "alias", e1.name, "team/nlp:v1", env=env).returncode == 0  # same: ok
    r = _imgbuild(s3_url, "alias", e2.name, "team/nlp:v1", "--force", env=env)
    assert r.returncode == 0, r.stderr
    # one alias, two arches: linux-64 for remote steps, osx-arm64 for a laptop
    r = _imgbuild(s3_url, "alias", mac.name, "team/nlp:v1", "--json", env=env)
    assert r.returncode == 0, r.stderr
    plats = json.loads(r.stdout)["platforms"]
    assert plats["linux-64"]["full_id"] == e2.full_id
    assert plats["osx-arm64"]["full_id"] == mac.full_id
    # the alias works wherever ENV is accepted, per arch
    from imagebuilder.catalog import find_env

    assert find_env(s3_objstore, "team/nlp:v1", "osx-arm64").full_id == mac.full_id
    assert find_env(s3_objstore, "team/nlp:v1", "linux-64").full_id == e2.full_id
    # aliasing an alias copies every arch it names; --arch picks one
    r = _imgbuild(
        s3_url, "alias", "team/nlp:v1", "team/nlp:stable", "--arch", "osx-arm64", "--json", env=env
    )
    assert r.returncode == 0, r.stderr
    assert list(json.loads(r.stdout)["platforms"]) == ["osx-arm64"]
    r = _imgbuild(s3_url, "alias", "team/nlp:v1", "team/all:v2", "--json", env=env)
    assert sorted(json.loads(r.stdout)["platforms"]) == ["linux-64", "osx-arm64"]
    # bad name: exit 1, nothing written
    r = _imgbuild(s3_url, "alias", e1.name, "Team/NLP", env=env)
    assert r.returncode == 1 and "bad environment name" in r.stderr


RACER = r"""
import sys, time, json
from imagebuilder.env import ResolvedEnv
from imagebuilder.ids import parse_alias
from imagebuilder.store.s3 import S3Store
from imagebuilder.store.aliases import set_alias
from imagebuilder.errors import ImgbuildError
url, endpoint, alias, env_file, start = sys.argv[1:6]
env = ResolvedEnv.from_json(json.load(open(env_file)))
store = S3Store(url, endpoint_url=endpoint)
store.exists("warmup")  # connect before the start line
while time.time() < float(start):
    pass
try:
    set_alias(store, parse_alias(alias), env)
    print("won")
except ImgbuildError as e:
    print(f"lost {type(e).__name__}: {e}")
"""


def _race(tmp_path, s3, s3_url, alias, n):
    envs = [fake_env(f"r{i}-{alias}") for i in range(n)]
    files = []
    for i, e in enumerate(envs):
        f = tmp_path / f"env{i}.json"
        f.write_text(json.dumps(e.to_json()))
        files.append(f)
    start = time.time() + 2.5
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, s3_url, s3.endpoint, alias, str(f), str(start)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **s3.env()},
        )
        for f in files
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    return envs, [o[0].strip() for o in outs], [o[1] for o in outs]


def test_alias_race_immutable_exactly_one_wins(tmp_path, s3, s3_objstore, s3_url):
    for _ in range(2):  # several rounds: a race that loses only sometimes must still fail here
        tag = f"team/race:v{time.time_ns()}"
        envs, outs, errs = _race(tmp_path, s3, s3_url, tag, 6)
        assert all("Traceback" not in e for e in errs), errs
        winners = [i for i, o in enumerate(outs) if o == "won"]
        assert len(winners) == 1, outs
        assert all(o.startswith("lost Conflict") for i, o in enumerate(outs) if i not in winners)
        from imagebuilder.ids import parse_alias
        from imagebuilder.store.aliases import read_alias

        rec = read_alias(s3_objstore, parse_alias(tag))
        assert rec.platforms["linux-64"].full_id == envs[winners[0]].full_id
        assert len(rec.history) == 1


def test_alias_race_mutable_never_torn(tmp_path, s3, s3_objstore, s3_url):
    envs, outs, errs = _race(tmp_path, s3, s3_url, "team/race:latest", 6)
    assert outs == ["won"] * 6, (outs, errs)
    from imagebuilder.ids import parse_alias
    from imagebuilder.store.aliases import read_alias

    rec = read_alias(s3_objstore, parse_alias("team/race:latest"))
    # every writer's change is in the history exactly once: nobody overwrote another's read
    assert sorted(h["full_id"] for h in rec.history) == sorted(e.full_id for e in envs)
    assert rec.platforms["linux-64"].full_id == rec.history[-1]["full_id"]
