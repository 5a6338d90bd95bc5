"""End to end on the rig: `imgbuild push` to the rig registry on a base by reference,
skopeo sees labels and alias tags, no-op and base-blob byte counts through the counting
proxy, and `imgbuild run` through the rig's podman socket.

Uses the shared `rig` fixture (tests/conftest.py): registry, podman, base images.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from regkit import built_channel, ocikit, store_with_env

from ci.services.registry_proxy import Proxy

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.rig


@pytest.fixture(scope="module")
def R(rig) -> dict[str, str]:
    """The rig's keys (tests/conftest.py starts the rig when IMGBUILD_RIG_ENV names none)."""
    return dict(rig.env)


@pytest.fixture(scope="module")
def store_env(tmp_path_factory):
    """A store holding one env (conda python + tinyfoo + six, a wheel) and its alias."""
    tmp = tmp_path_factory.mktemp("e2e")
    return store_with_env(tmp, built_channel(), "imgb-e2e", {"imgb_e2e.py": "V = 'e2e-ok'\n"})


@pytest.fixture
def cli_env(R, tmp_path, store_env, isolated):
    store, _ = store_env
    home = isolated
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            (
                "IMGBUILD_",
                "METAFLOW_IMGBUILD_",
                "SOURCE_DATE_EPOCH",
                "DOCKER_",
                "REGISTRY_AUTH_FILE",
            )
        )
    }
    env.update(
        HOME=str(home),
        IMGBUILD_STORE=str(store.root),
        IMGBUILD_CACHE_DIR=str(tmp_path / "cache"),
        IMGBUILD_INSECURE_REGISTRIES=R["IMGBUILD_RIG_REGISTRY"],
    )
    return env


cli = ocikit().run_cli


def skopeo(ref: str, raw: bool = False) -> dict:
    args = [
        "skopeo",
        "inspect",
        "--tls-verify=false",
        *(["--raw"] if raw else []),
        f"docker://{ref}",
    ]
    return json.loads(subprocess.run(args, capture_output=True, text=True, check=True).stdout)


def test_push_base_by_reference_noop_and_labels(R, store_env, cli_env):
    _, env = store_env
    reg = R["IMGBUILD_RIG_REGISTRY"]
    proxy = Proxy(reg).start()
    try:
        cli_env["IMGBUILD_INSECURE_REGISTRIES"] += f",{proxy.host}"
        base = f"{proxy.host}/imgbuild-rig/base:bookworm"
        repo = f"envs/e2e-{os.urandom(4).hex()}"  # the rig registry outlives test runs
        cli(["alias", env.full_id[:16], "team/e2e:v1"], cli_env)
        r = cli(
            [
                "push",
                "team/e2e:v1",
                "--to",
                f"docker://{proxy.host}/{repo}",
                "--base",
                base,
                "--json",
            ],
            cli_env,
        )
        out = json.loads(r.stdout)
        digest = out["digest"]
        base_digests = {
            d["digest"] for d in skopeo(f"{reg}/imgbuild-rig/base:bookworm", raw=True)["layers"]
        }
        # None of the base's blobs went up (mounted from imgbuild-rig/base), none came down.
        put_paths = [s.path for s in proxy.seen if s.method == "PUT" and "/blobs/" in s.path]
        assert put_paths and not any(d in p for d in base_digests for p in put_paths)
        assert not any(s.method == "GET" and d in s.path for d in base_digests for s in proxy.seen)
        assert proxy.count("POST", "mount=") >= len(base_digests)
        tags = {t.split(":")[-1] for t in out["refs"]}
        assert env.full_id[:16] in "".join(tags) and "team__e2e--v1" in tags
        info = skopeo(f"{reg}/{repo}:team__e2e--v1")
        assert info["Digest"] == digest
        assert info["Labels"]["dev.imgbuild.full_id"] == env.full_id
        full_tag = next(t for t in tags if t.startswith(env.full_id[:16]))
        assert skopeo(f"{reg}/{repo}:{full_tag}")["Digest"] == digest
        # No-op push: zero blob bytes, same digest.
        proxy.seen.clear()
        r = cli(
            [
                "push",
                "team/e2e:v1",
                "--to",
                f"docker://{proxy.host}/{repo}",
                "--base",
                base,
                "--json",
            ],
            cli_env,
        )
        assert json.loads(r.stdout)["digest"] == digest
        puts = [(s.path, s.status) for s in proxy.seen if s.method == "PUT"]
        assert proxy.upload_bytes() == 0 and not puts, puts
    finally:
        proxy.stop()


def test_run_through_podman(R, store_env, cli_env, tmp_path):
    _, env = store_env
    reg = R["IMGBUILD_RIG_REGISTRY"]
    cli_env["DOCKER_HOST"] = R["IMGBUILD_RIG_PODMAN_SOCKET"]
    for key in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF"):
        cli_env[key] = R[key]
    (tmp_path / "data.txt").write_text("from the host\n")
    code = (
        "import sys, imgb_e2e, tinyfoo; print(imgb_e2e.V, open('data.txt').read().strip(), "
        "sys.prefix); sys.exit(7)"
    )
    r = cli(
        [
            "run",
            env.full_id[:16],
            "--to",
            f"docker://{reg}/envs/run",
            "--base",
            f"{reg}/imgbuild-rig/base:bookworm",
            "--",
            "python",
            "-c",
            code,
        ],
        cli_env,
        expect=7,
        cwd=tmp_path,
    )
    assert "e2e-ok from the host /opt/imgbuild/env" in r.stdout


def test_venv_on_the_base_python_runs_through_podman(R, cli_env, tmp_path):
    # --python-from-base: no conda python in the image; the PyPI packages are a venv on the
    # base image's python (the rig's python-base: Debian's /usr/bin/python3.11).
    cli_env["IMGBUILD_STORE"] = str(tmp_path / "vstore")
    r = cli(
        ["resolve", "--pypi", "imgb-hello", "--pypi", "six", "--python-from-base", "--python",
         "3.11", "--index-url", R["IMGBUILD_RIG_INDEX_URL"], "--json"],
        cli_env, cwd=tmp_path,
    )  # fmt: skip
    ref = json.loads(r.stdout)["full_id"][:16]
    # A base without that python: one clear line, nothing written.
    bad = cli(["push", ref, "--to", f"oci:{tmp_path}/o", "--base", R["IMGBUILD_RIG_BASE_OCI"]],
              cli_env, expect=1, cwd=tmp_path)  # fmt: skip
    assert "has no python3.11" in bad.stderr and "--python-from-base" in bad.stderr
    assert not (tmp_path / "o" / "index.json").exists()
    cli_env["DOCKER_HOST"] = R["IMGBUILD_RIG_PODMAN_SOCKET"]
    for key in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF"):
        cli_env[key] = R[key]
    # the last field: the flags of six's .pyc, 1 = hash-based and unchecked, as bake compiles
    # them with the base's own python (a .pyc python wrote at import time would say 0)
    code = (
        "import sys, os, six, imgb_hello, importlib.util as u; print(sys.prefix, sys.base_prefix, "
        "sys.executable, os.environ['VIRTUAL_ENV'], os.environ['CONDA_PREFIX'], six.__file__, "
        "int.from_bytes(open(u.cache_from_source(six.__file__), 'rb').read()[4:8], 'little'))"
    )
    out = cli(
        ["run", ref, "--to", f"docker://{R['IMGBUILD_RIG_REGISTRY']}/envs/venv", "--base",
         R["IMGBUILD_RIG_PYBASE_IMAGE"], "--", "sh", "-c", f'python -c "{code}" && imgb-hello'],
        cli_env, cwd=tmp_path,
    ).stdout.split("\n")  # fmt: skip
    assert out[0].split() == [
        "/opt/imgbuild/env",
        "/usr",
        "/opt/imgbuild/env/bin/python",
        "/opt/imgbuild/env",
        "/opt/imgbuild/env",
        "/opt/imgbuild/env/lib/python3.11/site-packages/six.py",
        "1",
    ], out
    assert out[1].startswith("imgb-hello "), out


def test_venv_images_with_pyc_are_reproducible(R, cli_env, tmp_path):
    # The .pyc come from the base's python, unpacked into the local cache: two builds with
    # fresh stores and fresh caches give the same manifest, and it holds six's .pyc.
    digests = []
    for n in (1, 2):
        env = dict(cli_env, IMGBUILD_STORE=str(tmp_path / f"s{n}"),
                   IMGBUILD_CACHE_DIR=str(tmp_path / f"c{n}"))  # fmt: skip
        r = cli(
            ["resolve", "--pypi", "six", "--python-from-base", "--python", "3.11",
             "--index-url", R["IMGBUILD_RIG_INDEX_URL"], "--json"],
            env, cwd=tmp_path,
        )  # fmt: skip
        ref = json.loads(r.stdout)["full_id"][:16]
        out = tmp_path / f"o{n}"
        cli(["push", ref, "--to", f"oci:{out}", "--base", R["IMGBUILD_RIG_PYBASE_OCI"]],
            env, cwd=tmp_path)  # fmt: skip
        index = json.loads((out / "index.json").read_text())
        digests.append(index["manifests"][0]["digest"])
        assert (tmp_path / f"c{n}" / "base-root").is_dir()
    assert digests[0] == digests[1]
    names = _layer_names(tmp_path / "o1", digests[0])
    assert "opt/imgbuild/env/lib/python3.11/site-packages/__pycache__/six.cpython-311.pyc" in names


def _layer_names(layout, digest: str) -> set[str]:
    import tarfile

    from imagebuilder.oci.layer import decompressed

    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / digest.split(":")[1]).read_text())
    names = set()
    for d in manifest["layers"]:
        path = blobs / d["digest"].split(":")[1]
        with (
            open(path, "rb") as f,
            tarfile.open(fileobj=decompressed(d["mediaType"], f), mode="r|") as tar,
        ):
            names.update(m.name.lstrip("./") for m in tar)
    return names


def test_run_loads_archive_without_registry(R, store_env, cli_env, tmp_path):
    _, env = store_env
    cli_env["DOCKER_HOST"] = R["IMGBUILD_RIG_PODMAN_SOCKET"]
    r = cli(
        [
            "run",
            env.full_id[:16],
            "--base",
            R["IMGBUILD_RIG_BASE_OCI"],
            "--",
            "python",
            "-c",
            "import six; print('six', six.__version__)",
        ],
        cli_env,
        cwd=tmp_path,
    )
    assert r.stdout.startswith("six ")


def test_run_engine_down_is_clear(R, store_env, cli_env, tmp_path):
    _, env = store_env
    cli_env["DOCKER_HOST"] = f"unix://{tmp_path}/nothing.sock"
    r = cli(["run", env.full_id[:16], "--", "true"], cli_env, expect=5)
    assert "no container engine" in r.stderr and "nothing.sock" in r.stderr


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_cli_push_with_auth_and_no_secret_leaks(
    R, kind, store_env, cli_env, basic_registry, token_registry, helper_path
):
    from regkit import PASSWORD, USER, docker_config, write_helper

    _, env = store_env
    reg = basic_registry if kind == "basic" else token_registry
    cli_env["PATH"] = f"{helper_path}{os.pathsep}{cli_env['PATH']}"
    cli_env["IMGBUILD_INSECURE_REGISTRIES"] = reg.host
    home = Path(cli_env["HOME"])
    write_helper(helper_path, "e2e", {reg.host: (USER, PASSWORD)})
    docker_config(home, {"credHelpers": {reg.host: "e2e"}})
    target = f"docker://{reg.host}/envs/auth-{kind}"
    r = cli(["push", env.full_id[:16], "--to", target, "--json"], cli_env)
    assert json.loads(r.stdout)["digest"].startswith("sha256:")
    assert PASSWORD not in r.stdout + r.stderr
    # Wrong password: exit 1, names the registry and the helper, never the secret.
    write_helper(helper_path, "e2e", {reg.host: (USER, "WrongPassw0rd")})
    r = cli(["push", env.full_id[:16], "--to", target], cli_env, expect=1)
    assert reg.host in r.stderr and "docker-credential-e2e" in r.stderr
    assert "WrongPassw0rd" not in r.stdout + r.stderr and PASSWORD not in r.stdout + r.stderr
    # No credentials at all: exit 5, says where it looked.
    docker_config(home, {})
    r = cli(["push", env.full_id[:16], "--to", target, "--json"], cli_env, expect=5)
    err = json.loads(r.stdout)["error"]
    assert err["kind"] == "unauthorized" and "config.json" in err["message"]


def test_dockerfile_builds_with_podman(R, store_env, cli_env, tmp_path):
    """`imgbuild dockerfile --context` then `podman build` (buildah) on the rig: the image runs
    the same env at the same prefix, with the contract's labels and env."""
    _, env = store_env
    podman_env = {**cli_env}
    for key in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF"):
        podman_env[key] = R[key]
    ctx = tmp_path / "ctx"
    cli(
        [
            "dockerfile",
            env.full_id[:16],
            "--base",
            R["IMGBUILD_RIG_BASE_IMAGE"],
            "--builder",
            R["IMGBUILD_RIG_PYBASE_IMAGE"],
            "--context",
            ctx,
        ],
        cli_env,
    )
    text = cli(
        ["dockerfile", env.full_id[:16], "--base", R["IMGBUILD_RIG_BASE_IMAGE"]], cli_env
    ).stdout
    assert f'dev.imgbuild.full_id="{env.full_id}"' in text
    tag = f"localhost/imgbuild-dockerfile:{env.full_id[:16]}"
    b = subprocess.run(
        ["podman", "build", "--layers=false", "-q", "-t", tag, str(ctx)],
        capture_output=True,
        text=True,
        env=podman_env,
        timeout=600,
    )
    assert b.returncode == 0, b.stderr[-3000:]
    try:
        r = subprocess.run(
            [
                "podman",
                "run",
                "--rm",
                tag,
                "python",
                "-c",
                "import os, sys, six, imgb_e2e; print(sys.prefix, os.environ['IMGBUILD_ENV_ID'])",
            ],
            capture_output=True,
            text=True,
            env=podman_env,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["/opt/imgbuild/env", f"{env.req_id[:16]}:{env.full_id[:16]}"]
    finally:
        subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, env=podman_env)


def test_cli_faults_are_clear(R, store_env, cli_env):
    """Base not found (3), registry down (5), immutable tag refused by the registry (4)."""
    from ci.services.registry_proxy import Rule
    from ci.services.registry_token import free_port

    _, env = store_env
    reg = R["IMGBUILD_RIG_REGISTRY"]
    r = cli(
        [
            "push",
            env.full_id[:16],
            "--to",
            f"docker://{reg}/envs/faults",
            "--base",
            f"{reg}/imgbuild-rig/no-such-base:bookworm",
        ],
        cli_env,
        expect=3,
    )
    assert "no-such-base" in r.stderr and "not found" in r.stderr
    down = f"127.0.0.1:{free_port()}"
    cli_env["IMGBUILD_INSECURE_REGISTRIES"] += f",{down}"
    r = cli(["push", env.full_id[:16], "--to", f"docker://{down}/envs/x"], cli_env, expect=5)
    assert f"registry {down} is unreachable" in r.stderr
    proxy = Proxy(reg).start()
    try:
        cli_env["IMGBUILD_INSECURE_REGISTRIES"] += f",{proxy.host}"
        body = json.dumps(
            {"errors": [{"code": "TAG_INVALID", "message": "tag is immutable in this repository"}]}
        )
        proxy.rules.append(Rule("PUT", r"/manifests/[0-9a-f]{16}", f"400:{body}", times=-1))
        repo = f"envs/immutable-{os.urandom(4).hex()}"
        r = cli(
            ["push", env.full_id[:16], "--to", f"docker://{proxy.host}/{repo}"], cli_env, expect=4
        )
        assert "refuses to overwrite the tag" in r.stderr
    finally:
        proxy.stop()
