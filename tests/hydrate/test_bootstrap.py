"""The task-start bootstrap: standard library first, runtime from the store, lock, create, print
the interpreter. Run for real in the rig's python-base image (Debian python3 + pip only) with
only the `imagebuilder` source mounted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hydhelp import MIXED, ROOT, resolve, rig_s3, run_cli, runtime_wheels


def test_runtime_failure_is_only_a_warning(rig, sources, module_home):
    """Runs first in this module (the `boot` fixture stops the sources): a runtime that cannot
    be resolved (its index is down) never fails the user's resolve."""
    store = rig_s3(rig, "noruntime")
    env = {
        **store.env,
        "IMGBUILD_RUNTIME_CACHE": "1",
        "IMGBUILD_RUNTIME_PYTHONS": "3.11",
        "IMGBUILD_RUNTIME_INDEX_URL": "http://127.0.0.1:9/simple",
    }
    args = ["resolve", "--conda", "tzdata", "-c", sources.channel_url, "--json"]
    r = run_cli(args, env, module_home)
    assert r.json()["full_id"]
    assert "could not cache the task bootstrap runtime for linux-64 / python 3.11" in r.stderr
    assert r.stderr.count("could not cache the task bootstrap runtime") == 1


@pytest.fixture(scope="module")
def boot(rig, sources, module_home):
    """An S3 store with the mixed env, its pack, and the bootstrap runtime for cp311 (cached
    by the cache_env hook from local wheels); the channel and index are stopped after."""
    store = rig_s3(rig, "boot")
    env = {
        **store.env,
        "IMGBUILD_RUNTIME_CACHE": "1",
        "IMGBUILD_RUNTIME_PYTHONS": "3.11",
        "IMGBUILD_RUNTIME_FIND_LINKS": str(runtime_wheels()),
        "IMGBUILD_RUNTIME_INDEX_URL": sources.index_url,
    }
    from hydhelp import Store

    rt_store = Store(store.url, env)
    mixed = resolve(sources, rt_store, module_home, *MIXED, alias="hyd/boot")
    sources.stop()
    ref = f"{mixed['req_id']}:{mixed['full_id']}"
    run_cli(["pack", ref], store.env, module_home)
    return store, mixed, ref


def _bootstrap_env(store, home: Path) -> dict:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TERM")}
    return {**keep, **store.env, "HOME": str(home), "PYTHONPATH": str(ROOT)}


def test_runtime_is_in_the_store(boot, rig):
    store, _, _ = boot
    from imagebuilder.runtime import alias_for

    ref = alias_for("linux-64", "3.11")
    key = f"{store.url.split('/', 3)[3]}/aliases/{ref.name}/{ref.tag}.json"
    rec = json.loads(rig.s3_client().get_object(Bucket=rig.s3_bucket, Key=key)["Body"].read())
    assert set(rec["platforms"]) == {"linux-64"}


@pytest.mark.parametrize("how", ["pack", "per-package"])
def test_bootstrap_in_generic_python_image(boot, rig, how):
    rig.need("podman_socket", "pybase_image")
    store, mixed, ref = boot
    flags = "" if how == "pack" else " --no-pack"
    script = (
        f"python3 -m imagebuilder.bootstrap {ref} /opt/env{flags} > /tmp/out && "
        "tail -n1 /tmp/out && "
        "/opt/env/bin/python -c 'import tinyfoo, imgb_hello, imgb_uses_six, six' && "
        "/opt/env/bin/imgb-cli && "
        # a second task start on the same filesystem reuses it
        f"python3 -m imagebuilder.bootstrap {ref} /opt/env{flags}"
    )
    cmd = ["podman", "run", "--rm", "--network", "host"]
    cmd += ["-v", f"{ROOT / 'imagebuilder'}:/src/imagebuilder:ro", "-e", "PYTHONPATH=/src"]
    for k, v in store.env.items():
        cmd += ["-e", f"{k}={v}"]
    cmd += [rig.pybase_image, "sh", "-c", script]
    p = subprocess.run(
        cmd,
        env={**os.environ, **rig.podman_env()},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0] == "/opt/env/bin/python"
    assert "prefix=/opt/env" in lines and "conf=/opt/env" in lines
    assert lines[-1] == "/opt/env/bin/python"
    assert f"({'pack' if how == 'pack' else 'packages'}," in p.stderr
    assert "already holds" in p.stderr  # the second start
    if how == "pack":  # only zstandard is needed to unpack a pack
        assert "py_rattler" not in p.stderr and "zstandard" in p.stderr


def test_two_tasks_on_one_host(boot, tmp_path):
    """Two bootstraps of one env at once, with no site-packages (`python -S`): the first
    import is standard library only; one creates, the other waits and reuses."""
    store, mixed, ref = boot
    env = {**_bootstrap_env(store, tmp_path / "home"), "IMGBUILD_TEST_HOLD_LOCK": "2"}
    prefix = tmp_path / "env"
    cmd = [sys.executable, "-S", "-m", "imagebuilder.bootstrap", ref, str(prefix), "--no-pack"]
    procs = [
        subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [o[0].strip().splitlines()[-1] for o in outs] == [str(prefix / "bin/python")] * 2
    errs = "".join(o[1] for o in outs)
    assert errs.count("(packages,") == 1 and "waiting for" in errs
    ok = subprocess.run([prefix / "bin/python", "-c", "import tinyfoo, imgb_hello"])
    assert ok.returncode == 0


def test_bootstrap_errors(boot, tmp_path):
    store, mixed, ref = boot
    env = _bootstrap_env(store, tmp_path / "home")
    cmd = [sys.executable, "-S", "-m", "imagebuilder.bootstrap"]
    p = subprocess.run(
        [*cmd, "0123456789abcdef:0123456789abcdef", str(tmp_path / "e")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 3 and "no environment" in p.stderr and p.stdout == ""
    no_store = {k: v for k, v in env.items() if k != "IMGBUILD_STORE"}
    p = subprocess.run(
        [*cmd, ref, str(tmp_path / "e")], env=no_store, capture_output=True, text=True
    )
    assert p.returncode == 2 and "no store" in p.stderr
    bad_key = {**env, "AWS_SECRET_ACCESS_KEY": "wrong"}
    p = subprocess.run(
        [*cmd, ref, str(tmp_path / "e")], env=bad_key, capture_output=True, text=True
    )
    assert p.returncode == 5 and "refused access" in p.stderr
    assert "wrong" not in p.stderr


# --- the standard-library S3 reader against seaweedfs (which checks signatures) ----------------


def test_sigv4_reader_and_container_credentials(rig, s3_store):
    from imagebuilder.bootstrap.s3 import S3Error, S3Reader

    s3_store.client().put_object(
        Bucket=s3_store.bucket, Key=f"{s3_store.prefix}/a b/c+d.txt", Body=b"hello"
    )
    key = f"{s3_store.prefix}/a b/c+d.txt"
    good = {
        "AWS_ACCESS_KEY_ID": rig.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": rig.s3_secret_key,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    reader = S3Reader(rig.s3_bucket, rig.s3_endpoint, good)
    with reader.request("GET", key) as r:
        assert r.read() == b"hello"
    assert reader.list(f"{s3_store.prefix}/") == [key]
    bad = S3Reader(rig.s3_bucket, rig.s3_endpoint, {**good, "AWS_SECRET_ACCESS_KEY": "nope"})
    with pytest.raises(S3Error) as e:
        bad.request("GET", key)
    assert e.value.status == 403

    # ECS / Batch container credentials: served by a local endpoint with an auth token
    class Creds(BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.headers.get("Authorization") == "tok"
            body = json.dumps(
                {"AccessKeyId": rig.s3_access_key, "SecretAccessKey": rig.s3_secret_key}
            ).encode()
            self.send_response(200 if ok else 401)
            self.end_headers()
            self.wfile.write(body if ok else b"{}")

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Creds)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        env = {
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"http://127.0.0.1:{srv.server_port}/creds",
            "AWS_CONTAINER_AUTHORIZATION_TOKEN": "tok",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        with S3Reader(rig.s3_bucket, rig.s3_endpoint, env).request("GET", key) as r:
            assert r.read() == b"hello"
    finally:
        srv.shutdown()
