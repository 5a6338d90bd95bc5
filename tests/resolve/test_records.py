"""Each conda Package keeps the repodata record rattler solved it from; install can rebuild
the RepoDataRecord from it with no channel (imagebuilder/resolve/records.py). Round trip
checked through rattler in a child process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.rig


def test_record_round_trip_through_rattler(cli, rig_services, tmp_path):
    out = cli("resolve", "--conda", "tinybar", "--conda", "six", "-c", rig_services.channel_url,
              "--arch", "linux-64", "--json").json()  # fmt: skip
    record = cli.store / "envs" / out["req_id"][:16] / f"{out['full_id'][:16]}.json"
    env = json.loads(record.read_text())
    fmts = {p["filename"].rsplit(".", 1)[-1] for p in env["packages"]}
    assert {"conda", "bz2"} <= fmts  # both archive formats are in the set
    for p in env["packages"]:
        assert p["record"]["sha256"] == p["sha256"] and p["record"]["fn"] == p["filename"]
        assert p["record"]["url"] == p["url"]
    code = textwrap.dedent(
        f"""
        import json, os, sys
        from imagebuilder.env import ResolvedEnv
        from imagebuilder.resolve.records import rattler_records
        env = ResolvedEnv.from_json(json.load(open({str(record)!r})))
        pkgs = env.conda_packages()
        recs = rattler_records(pkgs)
        bad = [p.filename for p, r in zip(pkgs, recs) if json.loads(r.to_json()) != p.record]
        print(json.dumps({{"n": len(recs), "bad": bad,
                          "names": sorted(r.name.normalized for r in recs)}}))
        sys.stdout.flush(); os._exit(0)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["bad"] == [] and got["n"] == len(env["packages"])
    assert {"tinybar", "tinyfoo", "six", "python"} <= set(got["names"])
