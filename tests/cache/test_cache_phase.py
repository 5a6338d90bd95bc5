"""cache_env against the real seaweedfs S3 and a counting HTTP channel (tests/cache/helpers)."""

import json

from helpers import make_env, run_cache, run_imgbuild, write_env

from imagebuilder.errors import INTEGRITY, UNAVAILABLE


def test_cache_env_to_s3_then_nothing_downloaded(tmp_path, served, s3, s3_url, base_packages):
    env = make_env(base_packages, "full")
    assert len(env.packages) >= 20
    assert {p.kind for p in env.packages} == {"conda", "pypi"}
    f = write_env(tmp_path / "env.json", env)
    served.reset()
    r = run_cache(f, s3_url, s3.env())
    assert r.returncode == 0, r.stderr
    assert served.package_gets() == len(env.packages)
    assert f"{len(env.packages)} downloaded" in r.stderr
    # second run: every object is present, no package is fetched again
    served.reset()
    r = run_cache(f, s3_url, s3.env())
    assert r.returncode == 0, r.stderr
    assert served.package_gets() == 0
    assert f"{len(env.packages)} present, 0 downloaded" in r.stderr
    v = run_imgbuild("verify", "--json", "--store", s3_url, env=s3.env())
    assert v.returncode == 0, v.stdout + v.stderr
    assert json.loads(v.stdout)["objects"] == len(env.packages)


def test_tampered_package_rejected_and_not_stored(tmp_path, served, s3, s3_url, base_packages):
    env = make_env(base_packages[:5], "tamper")
    victim = env.packages[2]
    path = victim.url[len(served.url) :]
    served.tamper.add(path)
    try:
        r = run_cache(write_env(tmp_path / "env.json", env), s3_url, s3.env())
    finally:
        served.tamper.discard(path)
    assert r.returncode == INTEGRITY, r.stderr
    line = r.stderr.strip().splitlines()[0]
    assert victim.name in line and victim.sha256 in line and "sha256 mismatch" in line
    got = line.split("got ")[1].split()[0].strip(",")
    assert len(got) == 64 and got != victim.sha256
    s3c = s3.client()
    bucket, prefix = s3_url[5:].split("/", 1)
    keys = [o["Key"] for o in s3c.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    assert not any(victim.sha256 in k for k in keys)
    assert not any("/envs/" in k for k in keys)
    assert "Traceback" not in r.stderr


def test_md5_only_record_gets_sha256(tmp_path, served, base_packages):
    pkgs = [dict(p) for p in base_packages[:3]]
    real = pkgs[0]["sha256"]
    pkgs[0]["sha256"] = ""
    env = make_env(pkgs, "md5")
    r = run_cache(write_env(tmp_path / "env.json", env), str(tmp_path / "store"))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    cached = {p["filename"]: p for p in out["env"]["packages"]}
    assert cached[pkgs[0]["filename"]]["sha256"] == real
    assert out["full_id"] != env.full_id  # full_id follows the filled-in hash
    assert (tmp_path / "store" / f"pkgs/conda/{real}/{pkgs[0]['filename']}").is_file()


def test_wrong_credentials_missing_bucket_endpoint_down(
    tmp_path, served, s3, s3_url, base_packages
):
    env = make_env(base_packages[:2], "errs")
    f = write_env(tmp_path / "env.json", env)
    cases = [
        (
            {**s3.env(), "AWS_SECRET_ACCESS_KEY": "wrong-secret-xyz"},
            s3_url,
            "refused the credentials",
        ),
        (s3.env(), "s3://no-such-bucket-imgb/x", "does not exist"),
        ({**s3.env(), "IMGBUILD_S3_ENDPOINT_URL": "http://127.0.0.1:9"}, s3_url, "unreachable"),
    ]
    for env_vars, url, words in cases:
        r = run_cache(f, url, {**env_vars, "IMGBUILD_S3_ATTEMPTS": "2"})
        assert r.returncode == UNAVAILABLE, r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
        assert len(lines) == 1 and words in lines[0], r.stderr
        assert "wrong-secret-xyz" not in r.stderr + r.stdout
        assert s3.secret not in r.stderr + r.stdout
        assert "Traceback" not in r.stderr
    # nothing was written, not even a bucket (seaweedfs would create one on a bare PUT)
    assert "no-such-bucket-imgb" not in [b["Name"] for b in s3.client().list_buckets()["Buckets"]]


def test_credentials_never_in_records_or_output(tmp_path, served, base_packages):
    """A channel URL with user:token@ downloads with them; records and output never show them."""
    from imagebuilder.env import Package, ResolvedEnv
    from imagebuilder.spec import make_spec

    pkgs = base_packages[:3]
    secret_url = served.url.replace("http://", "http://alice:s3cr3t-tok@")
    spec = make_spec(arch="linux-64", conda=["x"], channels=[secret_url])
    env = ResolvedEnv(spec, tuple(Package.from_json(p) for p in pkgs))
    f = write_env(tmp_path / "env.json", env)
    r = run_cache(f, str(tmp_path / "store"))
    assert r.returncode == 0, r.stderr
    blob = r.stdout + r.stderr
    for p in (tmp_path / "store").rglob("*"):
        if p.is_file() and p.suffix == ".json":
            blob += p.read_text()
    assert "s3cr3t-tok" not in blob


def test_transmute_keeps_both_identities(tmp_path, served, base_packages):
    from imagebuilder.archive_check import check_conda_archive

    bz2 = [p for p in base_packages if p["filename"].endswith(".tar.bz2")][:3]
    env = make_env(bz2, "fmt")
    r = run_cache(
        write_env(tmp_path / "env.json", env), str(tmp_path / "store"), None, "--fmt", ".conda"
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["full_id"] == env.full_id  # the original identity is unchanged
    for p in out["env"]["packages"]:
        (alt,) = p["alt"]
        assert alt["filename"] == p["filename"].replace(".tar.bz2", ".conda")
        obj = tmp_path / "store" / f"pkgs/conda/{alt['sha256']}/{alt['filename']}"
        check_conda_archive(obj)
        assert (tmp_path / "store" / f"pkgs/conda/{p['sha256']}/{p['filename']}").is_file()


def test_retries_on_503_and_dropped_bodies_then_clear_failure(tmp_path, served, base_packages):
    pkgs = sorted(base_packages, key=lambda p: -p["size"])[:2]
    env = make_env(pkgs, "faults")
    f = write_env(tmp_path / "env.json", env)
    paths = [p["url"][len(served.url) :] for p in pkgs]
    served.reset()
    served.faults = {paths[0]: ["503", "503"], paths[1]: ["truncate"]}
    fast = {"IMGBUILD_FETCH_BACKOFF": "0.05"}
    r = run_cache(f, str(tmp_path / "store"), fast)
    assert r.returncode == 0, r.stderr
    assert served.gets[paths[0]] == 3 and served.gets[paths[1]] == 2
    v = run_imgbuild("verify", "--store", str(tmp_path / "store"))
    assert v.returncode == 0, v.stderr
    # a server that keeps failing: one clear line, exit 5, nothing stored
    served.faults = {paths[0]: ["503"] * 10}
    r = run_cache(f, str(tmp_path / "store2"), {**fast, "IMGBUILD_FETCH_ATTEMPTS": "3"})
    served.faults = {}
    assert r.returncode == UNAVAILABLE, r.stderr
    assert "after 3 attempts: HTTP 503" in r.stderr and "Traceback" not in r.stderr
    assert not list((tmp_path / "store2").glob("envs/**/*.json"))
