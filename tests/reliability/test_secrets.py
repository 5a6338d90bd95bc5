"""Secrets (issue 10, item 6): every command runs with credentials in play — S3 keys (the store
is the rig's seaweedfs), a registry password (~/.docker/config.json for the htpasswd
registry), a token in the channel URL (`/t/<token>/`) and a basic-auth index URL
(`http://user:pass@...`) — and no output, log (--debug included), env/alias/layer record,
lock file, SBOM, prefix, pack, image config, label, manifest or layer contains any of them (raw,
URL-encoded or base64 `user:pass`). A wrong token and a wrong password are tried too: the
error must not echo them either.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import sys
import tarfile
import threading
import urllib.parse
import uuid
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from relhelp import parallel

ROOT = Path(__file__).resolve().parents[2]
CATEGORY = "secret checks"
TOKEN = "tk-" + uuid.uuid4().hex  # conda token in the channel URL
WRONG_TOKEN = "tk-wrong-" + uuid.uuid4().hex[:12]
IDX_USER, IDX_PW = "idxuser", "idx-Pw-" + uuid.uuid4().hex[:12]
WRONG_PW = "wrong-Pw-" + uuid.uuid4().hex[:12]


class TokenChannel:
    """The rig's channel folder, served only under /t/<TOKEN>/ (conda's token URLs)."""

    def __init__(self, root: str):
        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def send_head(self):
                prefix = f"/t/{TOKEN}/"
                if not self.path.startswith(prefix):
                    self.send_error(401, "token required")
                    return None
                self.path = "/" + self.path[len(prefix) :]
                return super().send_head()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=root))
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def url(self, token: str = TOKEN) -> str:
        return f"http://127.0.0.1:{self.port}/t/{token}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def sources(rig, tmp_path_factory):
    rig.need("channel_dir", "index_dir", "registry_auth", "s3_endpoint")
    import subprocess

    chan = TokenChannel(rig.channel_dir)
    log = open(tmp_path_factory.mktemp("secret-index") / "index.log", "w")  # noqa: SIM115
    idx = subprocess.Popen(
        [sys.executable, "-u", str(ROOT / "ci/pypi/serve.py"), "--root", rig.index_dir,
         "--port", "0", "--auth", f"{IDX_USER}:{IDX_PW}", "--quiet"],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )  # fmt: skip
    url = idx.stdout.readline().strip()
    try:
        host = url.split("//", 1)[1]
        yield {
            "channel": chan.url(),
            "bad_channel": chan.url(WRONG_TOKEN),
            "index": f"http://{IDX_USER}:{IDX_PW}@{host}",
            "bad_index": f"http://{IDX_USER}:{WRONG_PW}@{host}",
        }
    finally:
        chan.stop()
        idx.terminate()
        idx.wait(timeout=10)
        log.close()


def _secrets(rig) -> list[str]:
    out = [TOKEN, WRONG_TOKEN, IDX_PW, WRONG_PW, rig.s3_secret_key, rig.registry_password]
    out += [urllib.parse.quote(s, safe="") for s in out]
    for user, pw in ((IDX_USER, IDX_PW), (rig.registry_user, rig.registry_password)):
        out.append(base64.b64encode(f"{user}:{pw}".encode()).decode())
    return sorted(set(out))


def _expand(data: bytes, depth: int = 0) -> list[bytes]:
    """data and, for archives, every member (zstd/gzip/tar/zip unpacked, nested too)."""
    out = [data]
    if depth > 3:
        return out
    raw = None
    if data[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    elif data[:2] == b"\x1f\x8b":
        raw = gzip.decompress(data)
    elif data[:4] == b"PK\x03\x04":
        import zipfile

        with zipfile.ZipFile(io.BytesIO(data)) as z:
            for n in z.namelist():
                out += _expand(z.read(n), depth + 1)
        return out
    if raw is not None:
        out += _expand(raw, depth + 1)
        return out
    if len(data) > 512 and data[257:262] == b"ustar":
        with tarfile.open(fileobj=io.BytesIO(data)) as t:
            for m in t:
                if m.isfile():
                    out += _expand(t.extractfile(m).read(), depth + 1)
                elif m.issym():
                    out.append(m.linkname.encode())
    return out


def leaks(data: bytes, secrets: list[str], where: str) -> list[str]:
    return [
        f"{where}: {s[:6]}..." for chunk in _expand(data) for s in secrets if s.encode() in chunk
    ]


def tree_leaks(root: Path, secrets: list[str]) -> list[str]:
    hits = []
    for p in Path(root).rglob("*"):
        if p.is_file() and not p.is_symlink():
            hits += leaks(p.read_bytes(), secrets, str(p))
    return sorted(set(hits))


def _registry_leaks(rig, repo: str, secrets: list[str]) -> list[str]:
    """Every manifest, config, layer and SBOM of the repository, read with the password."""
    import requests

    auth = (rig.registry_user, rig.registry_password)
    base = f"http://{rig.registry_auth}/v2/{repo}"
    accept = ("application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
              "application/vnd.docker.distribution.manifest.v2+json")  # fmt: skip
    tags = requests.get(f"{base}/tags/list", auth=auth, timeout=30).json().get("tags") or []
    hits, seen = [], set()

    def manifest(ref: str):
        if ref in seen:
            return
        seen.add(ref)
        m = requests.get(
            f"{base}/manifests/{ref}", headers={"Accept": accept}, auth=auth, timeout=30
        )
        hits.extend(leaks(m.content, secrets, f"manifest {ref}"))
        doc = m.json()
        for child in doc.get("manifests", []):
            manifest(child["digest"])
        for b in [doc.get("config")] + doc.get("layers", []):
            if b and b["digest"] not in seen:
                seen.add(b["digest"])
                data = requests.get(f"{base}/blobs/{b['digest']}", auth=auth, timeout=60).content
                hits.extend(leaks(data, secrets, f"blob {b['digest'][:19]}"))

    for t in tags:
        manifest(t)
    assert len(seen) > 4, f"the registry walk found too little: {tags}"
    return hits


def test_no_secret_anywhere(rig, sources, runner, tmp_path, record):
    secrets = _secrets(rig)
    d = tmp_path
    run = runner(d / "cli")
    home = run.home
    (home / ".docker").mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{rig.registry_user}:{rig.registry_password}".encode()).decode()
    (home / ".docker" / "config.json").write_text(
        json.dumps({"auths": {rig.registry_auth: {"auth": auth}}})
    )
    url = f"s3://{rig.s3_bucket}/rel-secrets-{uuid.uuid4().hex[:10]}"
    env = {
        "IMGBUILD_STORE": url,
        "AWS_ACCESS_KEY_ID": rig.s3_access_key,
        "AWS_SECRET_ACCESS_KEY": rig.s3_secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
        "IMGBUILD_S3_ENDPOINT_URL": rig.s3_endpoint,
        "IMGBUILD_INSECURE_REGISTRIES": f"{rig.registry_auth},{rig.registry}",
        "IMGBUILD_FETCH_ATTEMPTS": "1",
    }
    repo = f"rel/secrets-{uuid.uuid4().hex[:10]}"
    outputs: list = []

    def cli(*args, expect=0):
        r = run(*args, env=env, expect=None, timeout=600)
        outputs.append(r)
        if expect is not None and r.returncode != expect:
            raise AssertionError(
                f"imgbuild {' '.join(map(str, args))}: exit {r.returncode}\n{r.stderr[-2000:]}"
            )
        return r

    # the env: conda from the token channel, a wheel from the basic-auth index
    r = cli("resolve", "-c", sources["channel"], "--index-url", sources["index"], "--conda",
            "tinyfoo", "--pypi", "imgb-hello", "--arch", "linux-64", "--alias", "rel/secret",
            "--json", "--debug")  # fmt: skip
    full = r.json()["full_id"][:16]
    steps = [
        ("show", full, "--json"),
        ("show", "rel/secret", "--debug"),
        ("ls", "--json"),
        ("alias", full, "rel/secret:v1", "--json"),
        ("export", full, "--format", "conda-lock", "-o", d / "out/conda-lock.yml"),
        ("export", full, "--format", "pixi", "-o", d / "out/pixi.lock"),
        ("export", full, "--format", "explicit", "-o", d / "out/explicit.txt"),
        ("export", full, "--format", "requirements", "-o", d / "out/requirements.txt"),
        ("export", full, "--format", "pylock", "-o", d / "out/pylock.toml"),
        ("sbom", full, "-o", d / "out/sbom.json"),
        ("verify", "--json", "--debug"),
        ("gc", "--dry-run", "--json"),
        ("diff", full, "rel/secret", "--json"),
        ("why", "tinyfoo", full, "--json"),
        ("config", "show", "--json"),
        ("config", "show"),
        ("create", full, "--prefix", d / "out/prefix", "--json"),
        ("push", full, "--base", "scratch", "--to", f"oci:{d / 'out/oci'}", "--json", "--debug"),
        ("image", full, "--base", "scratch", "--to", f"oci:{d / 'out/oci'}", "--json"),
        ("push", full, "--base", "scratch", "--to", f"{rig.registry_auth}/{repo}", "--json", "--debug"),
        ("dockerfile", full, "--base", rig.base_image or "127.0.0.1:1/x:1", "--context", d / "out/ctx"),
    ]  # fmt: skip
    (d / "out").mkdir(exist_ok=True)

    def step(args) -> None:
        cli(*args)  # raises on a non-zero exit

    for args, ok, detail, secs in parallel(step, steps, jobs=4):
        record(CATEGORY, f"runs: imgbuild {' '.join(str(a) for a in args[:2])}", ok, detail, secs)
    seq = [
        ("pack", full, "--json"),
        ("create", full, "--prefix", d / "out/prefix-pack", "--from-pack", "--json"),
        ("get", "rel/secret", "--from", url, "--with-packages", "--store", d / "out/local-store"),
    ]
    for args in seq:
        try:
            cli(*args)
            record(CATEGORY, f"runs: imgbuild {args[0]}", True)
        except AssertionError as e:
            record(CATEGORY, f"runs: imgbuild {args[0]}", False, str(e))
    # failures that involve credentials: the message must not echo them
    for name, args in (
        ("wrong channel token", ("resolve", "-c", sources["bad_channel"], "--conda", "tinyfoo",
                                 "--dry-run", "--json")),
        ("wrong index password", ("resolve", "-c", sources["channel"], "--index-url",
                                  sources["bad_index"], "--pypi", "imgb-hello", "--dry-run",
                                  "--json")),
        ("wrong S3 secret", ("ls", "--json")),
    ):  # fmt: skip
        e = dict(env)
        if name == "wrong S3 secret":
            e["AWS_SECRET_ACCESS_KEY"] = WRONG_PW
        r = run(*args, env=e, expect=None, timeout=300)
        outputs.append(r)
        record(CATEGORY, f"fails cleanly: {name}", r.returncode not in (0,) and "Traceback" not in r.stderr,
               r.stderr[-800:])  # fmt: skip

    # now look everywhere
    checks = {
        "command output and logs": [
            h
            for r in outputs
            for h in leaks((r.stdout + r.stderr).encode(), secrets, " ".join(r.args[:2]))
        ],
        "S3 store objects (records, packs, layers)": _store_leaks(url, env, secrets),
        "local store after get": tree_leaks(d / "out/local-store", secrets),
        "lock files and SBOM": tree_leaks(d / "out", secrets),
        "OCI layout (configs, labels, manifests, layers, SBOM)": tree_leaks(d / "out/oci", secrets),
        "registry (configs, labels, manifests, layers, SBOM)": _registry_leaks(rig, repo, secrets),
        "created prefixes (conda-meta, dist-info)": tree_leaks(d / "out/prefix", secrets)
        + tree_leaks(d / "out/prefix-pack", secrets),
    }
    for what, hits in checks.items():
        record(CATEGORY, f"no secret in {what}", not hits, "\n".join(hits[:20]))
    record.check()


def _store_leaks(url: str, env: dict, secrets: list[str]) -> list[str]:
    from imagebuilder.config import load_config
    from imagebuilder.store import open_store

    saved = {k: os.environ.get(k) for k in env}
    os.environ.update({k: v for k, v in env.items() if k.startswith(("AWS_", "IMGBUILD_S3"))})
    try:
        store = open_store(
            url, load_config(flags={"s3_endpoint_url": env["IMGBUILD_S3_ENDPOINT_URL"]})
        )
        hits = []
        tops = ("envs/", "aliases/", "layers/", "packs/", "blobs/", "builds/", "leases/")
        keys = [k for top in tops for k in store.list(top)]
        assert any(k.startswith("envs/") for k in keys) and any(
            k.startswith("packs/") for k in keys
        )
        for key in keys:
            if key.startswith("pkgs/"):
                continue  # the channel's and index's own archives
            hits += leaks(store.get_bytes(key), secrets, key)
        return hits
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.parametrize(
    "url, clean",
    [
        ("http://h:1/t/tok-123", "http://h:1"),
        ("http://h:1/t/tok-123/", "http://h:1/"),
        (
            "https://conda.example/t/tok-123/main/linux-64/x.conda",
            "https://conda.example/main/linux-64/x.conda",
        ),
        ("https://u:pw@repo.example/simple", "https://repo.example/simple"),
    ],
)
def test_strip_credentials_token_anywhere(url, clean):
    """A conda token at the end of a channel URL (no slash after it) is a token too."""
    from imagebuilder.urls import strip_credentials

    assert strip_credentials(url) == clean


def test_redact_tokens_in_text():
    from imagebuilder.urls import redact

    text = 'GET http://h:1/t/tok-a failed; see "http://h/t/tok-b" and http://h/t/tok-c/x'
    out = redact(text)
    assert "tok-a" not in out and "tok-b" not in out and "tok-c" not in out, out
    assert "failed; see" in out and out.count("http://h") == 3, out  # the text around survives


def test_scanner_sees_inside_archives():
    """The scanner must be able to fail: a secret deep in a zip of a tar.zst is found."""
    import zipfile

    import zstandard

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        data = b'{"url": "https://h/t/' + TOKEN.encode() + b'/x"}'
        ti = tarfile.TarInfo("conda-meta/x.json")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    inner = zstandard.ZstdCompressor().compress(buf.getvalue())
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pkg.tar.zst", inner)
    assert leaks(z.getvalue(), [TOKEN], "planted")
    assert not leaks(z.getvalue(), [IDX_PW], "planted")
