"""The rig's services themselves: registry (plain and htpasswd), S3, podman, base images, and
`ci/rig.py down` leaving nothing behind. Also the pytest process' immunity to crashes at
interpreter exit (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RIG_PY = ROOT / "ci" / "rig.py"

pytestmark = pytest.mark.rig


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(
        ["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=300
    )
    if check:
        assert p.returncode == 0, f"skopeo {' '.join(args)}: {p.stderr}"
    return p


def tiny_layout(tmp: Path, tag: str = "t") -> Path:
    """An OCI layout with one layer of random bytes (so its blobs are new to any registry)."""
    layout, bundle = tmp / "layout", tmp / "bundle"
    for args in (["init", "--layout", str(layout)], ["new", "--image", f"{layout}:{tag}"]):
        subprocess.run(["umoci", *args], check=True, capture_output=True)
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:{tag}", str(bundle)],
        check=True,
        capture_output=True,
    )
    (bundle / "rootfs" / "random").write_bytes(os.urandom(200_000))
    subprocess.run(
        ["umoci", "repack", "--image", f"{layout}:{tag}", str(bundle)],
        check=True,
        capture_output=True,
    )
    return layout


def layout_blob_sizes(layout: Path, tag: str = "t") -> int:
    """Bytes of the config and layers of `tag` (what a first push must upload)."""
    index = json.loads((layout / "index.json").read_text())
    desc = next(
        m
        for m in index["manifests"]
        if m["annotations"]["org.opencontainers.image.ref.name"] == tag
    )
    manifest = json.loads((layout / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_bytes())
    return manifest["config"]["size"] + sum(ly["size"] for ly in manifest["layers"])


# --------------------------------------------------------------------------- registry


def test_env_file_has_every_service(rig):
    for key in (
        "IMGBUILD_RIG_REGISTRY", "IMGBUILD_RIG_REGISTRY_LOG", "IMGBUILD_RIG_REGISTRY_AUTH",
        "IMGBUILD_RIG_REGISTRY_USER", "IMGBUILD_RIG_REGISTRY_PASSWORD", "IMGBUILD_RIG_S3_ENDPOINT",
        "IMGBUILD_RIG_S3_ACCESS_KEY", "IMGBUILD_RIG_S3_SECRET_KEY", "IMGBUILD_RIG_S3_BUCKET",
        "IMGBUILD_RIG_PODMAN_SOCKET", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF",
        "CONTAINERS_REGISTRIES_CONF", "IMGBUILD_RIG_BASE_IMAGE", "IMGBUILD_RIG_BASE_DIGEST",
        "IMGBUILD_RIG_BASE_OCI", "IMGBUILD_RIG_PYBASE_IMAGE", "IMGBUILD_RIG_PYBASE_DIGEST",
        "IMGBUILD_RIG_PYBASE_OCI",
    ):  # fmt: skip
        assert rig.env.get(key), f"{key} missing from {rig.env_file}"
    assert rig.registry.startswith("127.0.0.1:") and rig.registry_auth.startswith("127.0.0.1:")


def test_base_images_are_in_the_registry_by_digest(rig):
    for ref, digest, oci in (
        (rig.base_image, rig.base_digest, rig.base_oci),
        (rig.pybase_image, rig.pybase_digest, rig.pybase_oci),
    ):
        info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}").stdout)
        assert info["Digest"] == digest
        assert info["Architecture"] == "amd64" and info["Os"] == "linux"
        local = json.loads(skopeo("inspect", oci).stdout)
        assert local["Digest"] == digest
    # python-base is base + one layer: the base layer blob is shared
    base = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{rig.base_image}").stdout)
    py = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{rig.pybase_image}").stdout)
    assert (
        py["Layers"][: len(base["Layers"])] == base["Layers"]
        and len(py["Layers"]) == len(base["Layers"]) + 1
    )


def test_registry_accepts_skopeo_push_and_log_counts_bytes(rig, tmp_path):
    layout = tiny_layout(tmp_path)
    log = rig.registry_logs()
    repo = f"rigtest/push-{uuid.uuid4().hex[:8]}"
    mark = log.mark()
    skopeo(
        "copy", "--dest-tls-verify=false", f"oci:{layout}:t", f"docker://{rig.registry}/{repo}:v1"
    )
    info = json.loads(
        skopeo("inspect", "--tls-verify=false", f"docker://{rig.registry}/{repo}:v1").stdout
    )
    local = json.loads(skopeo("inspect", f"oci:{layout}:t").stdout)
    assert info["Digest"] == local["Digest"]
    assert log.uploaded_bytes(mark) == layout_blob_sizes(layout)
    assert (repo, "v1") in log.manifest_puts(mark)
    # pushing again uploads nothing
    mark = log.mark()
    skopeo(
        "copy", "--dest-tls-verify=false", f"oci:{layout}:t", f"docker://{rig.registry}/{repo}:v2"
    )
    assert log.uploaded_bytes(mark) == 0
    assert log.manifest_puts(mark) == [(repo, "v2")]


def _v2_status(registry: str, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(f"http://{registry}/v2/")
    if auth:
        import base64

        req.add_header(
            "Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode()
        )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_htpasswd_registry_refuses_anonymous_and_accepts_user(rig, tmp_path):
    user, password = rig.registry_user, rig.registry_password
    assert _v2_status(rig.registry_auth) == 401
    assert _v2_status(rig.registry_auth, (user, "wrong")) == 401
    assert _v2_status(rig.registry_auth, (user, password)) == 200
    layout = tiny_layout(tmp_path)
    dest = f"docker://{rig.registry_auth}/rigtest/auth:t"
    anon = skopeo("copy", "--dest-tls-verify=false", f"oci:{layout}:t", dest, check=False)
    assert anon.returncode != 0 and "unauthorized" in anon.stderr.lower()
    bad = skopeo(
        "copy",
        "--dest-tls-verify=false",
        f"--dest-creds={user}:nope",
        f"oci:{layout}:t",
        dest,
        check=False,
    )
    assert bad.returncode != 0
    skopeo(
        "copy",
        "--dest-tls-verify=false",
        f"--dest-creds={user}:{password}",
        f"oci:{layout}:t",
        dest,
    )
    info = skopeo("inspect", "--tls-verify=false", f"--creds={user}:{password}", dest)
    assert json.loads(info.stdout)["Digest"]
    htpasswd = (Path(rig.registry_auth_data).parent / "htpasswd").read_text()
    assert htpasswd.startswith(f"{user}:$2y$")  # bcrypt


# --------------------------------------------------------------------------- S3


def test_s3_round_trip_and_wrong_keys(rig, s3_store):
    from botocore.exceptions import ClientError

    s3 = s3_store.client()
    key = f"{s3_store.prefix}/hello.txt"
    s3.put_object(Bucket=s3_store.bucket, Key=key, Body=b"hello rig")
    assert s3_store.read("hello.txt") == b"hello rig"
    assert s3_store.keys() == ["hello.txt"]
    if rig.s3_backend == "moto":
        pytest.skip("moto accepts any credentials (seaweedfs could not run; see rig.env)")
    for access, secret in ((rig.s3_access_key, "wrong-secret"), ("nobody", rig.s3_secret_key)):
        with pytest.raises(ClientError) as e:
            rig.s3_client(access, secret).get_object(Bucket=s3_store.bucket, Key=key)
        assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert s3_store.env["IMGBUILD_STORE"] == s3_store.url and s3_store.url.startswith("s3://")


def test_s3_conditional_writes(rig, s3_store):
    """What the store's alias records rely on: If-None-Match: * and If-Match: <etag>."""
    from botocore.exceptions import ClientError

    s3, bucket, key = s3_store.client(), s3_store.bucket, f"{s3_store.prefix}/alias.json"

    def refused(**kw) -> bool:
        try:
            s3.put_object(Bucket=bucket, Key=key, **kw)
            return False
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 412, e.response
            return True

    assert not refused(Body=b"1", IfNoneMatch="*")  # create
    assert refused(Body=b"2", IfNoneMatch="*")  # exists
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"]
    assert refused(Body=b"2", IfMatch='"0123456789abcdef0123456789abcdef"')
    assert not refused(Body=b"2", IfMatch=etag)
    assert refused(Body=b"3", IfMatch=etag)  # stale etag
    assert s3_store.read("alias.json") == b"2"


# --------------------------------------------------------------------------- podman


def _pull(client, ref: str):
    repo, tag = ref.rsplit(":", 1)
    client.images.pull(repo, tag=tag)
    return client.images.get(ref)  # a failed pull only shows here (404), not as an exception


def _run(client, image: str, command: list[str]) -> bytes:
    """Run to the end, then read the output. Not `containers.run`: it follows the logs of a
    container that may already have exited, and podman's follow then hung once in CI (the
    stream never ended). imgbuild's own engine.py attaches before it starts, which is safe."""
    c = client.containers.create(image, command)
    try:
        c.start()
        status = c.wait(timeout=300)["StatusCode"]
        out = c.logs(stdout=True, stderr=False)
        assert status == 0, (status, out, c.logs(stdout=False, stderr=True))
        return out
    finally:
        c.remove(force=True)


def test_podman_pulls_base_and_runs_bash(rig):
    client = rig.docker_client()
    assert client.ping()
    image = _pull(client, rig.base_image)
    assert rig.base_digest in json.dumps(image.attrs.get("RepoDigests", []))
    out = _run(client, rig.base_image, ["bash", "-c", "echo ok"])
    assert out == b"ok\n"


def test_podman_runs_python_base(rig):
    client = rig.docker_client()
    _pull(client, rig.pybase_image)
    script = (
        "import ssl, sqlite3, json, os, urllib.request; ctx = ssl.create_default_context(); "
        "assert ctx.cert_store_stats()['x509_ca'] > 50; "
        "assert os.path.exists('/etc/ssl/certs/ca-certificates.crt'); print('ok', ssl.OPENSSL_VERSION)"
    )
    out = _run(client, rig.pybase_image, ["python3", "-c", script])
    assert out.startswith(b"ok OpenSSL 3")
    out = _run(client, rig.pybase_image, ["pip", "--version"])
    assert out.startswith(b"pip ")


# --------------------------------------------------------------------------- rig.py itself


def _rig(command: str, folder: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(RIG_PY), command, "--dir", str(folder), *extra],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )  # fmt: skip


def _processes_naming(folder: Path) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                args = (entry / "cmdline").read_bytes().decode(errors="replace")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if str(folder) in args and state not in ("Z", "X"):
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_rig_up_is_idempotent_and_down_leaves_nothing(rig, tmp_path_factory):
    folder = Path(tmp_path_factory.mktemp("mini", numbered=True)) / "r"
    pids: list[int] = []
    extra: list[int] = []
    try:
        first = _rig("up", folder, "--only", "registry,s3,podman")
        assert first.returncode == 0, first.stdout + first.stderr
        env1 = (folder / "rig.env").read_text()
        state = json.loads((folder / "state.json").read_text())
        pids = [pid for st in state["services"].values() for pid, _ in st.get("pids", [])]
        assert len(pids) == 3 and all(_alive(p) for p in pids)

        again = _rig("up", folder, "--only", "registry,s3,podman")
        assert again.returncode == 0, again.stdout + again.stderr
        assert (folder / "rig.env").read_text() == env1  # same addresses
        state2 = json.loads((folder / "state.json").read_text())
        assert sorted(
            p for st in state2["services"].values() for p, _ in st.get("pids", [])
        ) == sorted(pids)

        # a running container (conmon + its process) must not outlive `down`
        penv = {**os.environ, **{k: v for k, v in (ln.split("=", 1) for ln in env1.splitlines())}}
        run = subprocess.run(
            ["podman", "run", "-d", "--tls-verify=false", rig.base_image, "sleep", "300"],
            env=penv,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr
        cid = run.stdout.strip().splitlines()[-1]
        inspect = subprocess.run(
            ["podman", "inspect", "-f", "{{.State.Pid}} {{.State.ConmonPid}}", cid],
            env=penv,
            capture_output=True,
            text=True,
        )
        extra = [int(x) for x in inspect.stdout.split()]
        assert all(_alive(p) for p in extra)
    finally:
        down = _rig("down", folder)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not [p for p in pids + extra if _alive(p)]
    assert _processes_naming(folder) == []
    assert not (folder / "rig.env").exists()
    assert _rig("env", folder).returncode == 1
    ports = json.loads((folder / "state.json").read_text())["services"]["s3"]["ports"].values()
    assert not [p for p in ports if any(Path("/tmp").glob(f"seaweedfs-*-{p}.sock"))]


# --------------------------------------------------------------------------- crash at exit


CRASHING_TESTS = """
import atexit, os, signal

def _crash():  # what py-rattler sometimes does during interpreter finalization
    os.kill(os.getpid(), signal.SIGSEGV)

atexit.register(_crash)

def test_ok():
    assert True

def test_maybe_fails():
    assert os.environ.get("FAIL") != "1"
"""


@pytest.mark.parametrize("xdist", [False, True], ids=["serial", "xdist"])
def test_pytest_exit_is_immune_to_crash_at_finalization(tmp_path, xdist):
    if xdist:
        pytest.importorskip("xdist")
    for name in ("conftest.py", "clirunner.py"):  # the root conftest and what it imports
        shutil.copy(Path(__file__).parents[1] / name, tmp_path / name)
    (tmp_path / "test_crash.py").write_text(textwrap.dedent(CRASHING_TESTS))
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    if xdist:
        args += ["-p", "xdist", "-n", "2"]
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("IMGBUILD_TEST_NO_HARD_EXIT", "PYTEST_XDIST_WORKER")
    }
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # fast start; xdist is loaded explicitly
    for fail, code in (("0", 0), ("1", 1)):
        p = subprocess.run(
            args,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            env={**env, "FAIL": fail},
        )
        assert p.returncode == code, p.stdout + p.stderr
        assert ("2 passed" if code == 0 else "1 failed, 1 passed") in p.stdout, p.stdout
    if xdist:
        return  # xdist's controller ignores a worker that crashes after it reported its results
    # without the hook the crash is real (so the test above proves something)
    p = subprocess.run(
        args, cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**env, "FAIL": "0", "IMGBUILD_TEST_NO_HARD_EXIT": "1"},
    )  # fmt: skip
    assert p.returncode != 0


# --------------------------------------------------------------------------- fixtures


def test_imgbuild_fixture_isolates_and_checks_exit_codes(imgbuild, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-the-developer")
    monkeypatch.setenv("IMGBUILD_REGISTRY", "example.invalid/repo")
    r = imgbuild("--version")
    assert "imgbuild" in r.stdout
    env = imgbuild.environ()
    assert env["HOME"] == str(imgbuild.home) and env["IMGBUILD_STORE"] == str(imgbuild.store)
    assert "AWS_SECRET_ACCESS_KEY" not in env and "IMGBUILD_REGISTRY" not in env
    assert imgbuild.environ({"IMGBUILD_STORE": None, "X": 1}).get("IMGBUILD_STORE") is None
    assert imgbuild("no-such-verb", expect=2).returncode == 2
    assert imgbuild("no-such-verb", expect=None).returncode == 2
    with pytest.raises(pytest.fail.Exception, match="exit 2, expected 0"):
        imgbuild("no-such-verb")
