"""The local PyPI index of the test rig (ci/pypi): PEP 503/691/700 answers, uv and pip use it."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPI_DIR = ROOT / "ci" / "pypi"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
PIP_ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"

pytestmark = pytest.mark.rig


def _load(name: str):
    modname = f"imgb_pypi_{name}"
    if modname in sys.modules:
        return sys.modules[modname]
    spec = importlib.util.spec_from_file_location(modname, PYPI_DIR / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    spec.loader.exec_module(mod)
    return mod


index = _load("index")


class Server:
    """ci/pypi/serve.py on a free port; ``url`` ends in /simple."""

    def __init__(self, root: Path, *extra: str):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(PYPI_DIR / "serve.py"),
                "--root",
                str(root),
                "--port",
                "0",
                "--quiet",
                *extra,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = self.proc.stdout.readline().strip()
        assert self.url.endswith("/simple"), self.url
        self.base = self.url[: -len("/simple")]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


@pytest.fixture(scope="session")
def pypi_root(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("rig") / "pypi"
    p = subprocess.run(
        [sys.executable, str(PYPI_DIR / "build.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert Path(p.stdout.strip().splitlines()[-1]) == out.resolve()
    return out


@pytest.fixture(scope="session")
def pypi(pypi_root):
    srv = Server(pypi_root)
    yield srv
    srv.stop()


def get(url: str, accept: str | None = None, headers: dict | None = None, context=None):
    req = urllib.request.Request(
        url, headers={**({"Accept": accept} if accept else {}), **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def uv(
    *args: str, cache: Path, env: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("UV_")}
    e.update({"UV_CACHE_DIR": str(cache), "UV_NO_PROGRESS": "1", **(env or {})})
    p = subprocess.run(["uv", *args], capture_output=True, text=True, env=e, timeout=300)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def compile_pins(
    reqs: list[str], url: str, tmp_path: Path, *extra: str, cache: Path | None = None, **kw
):
    src = tmp_path / "requirements.in"
    src.write_text("\n".join(reqs) + "\n")
    p = uv(
        "pip", "compile", "--no-config", str(src), "--index-url", url, "--python-version", "3.11",
        "--python-platform", "x86_64-manylinux_2_28", "--no-header", "--no-annotate", *extra,
        cache=cache or tmp_path / "uv-cache", **kw,
    )  # fmt: skip
    return p


def pins(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "==" in line and not line.startswith((" ", "#")):
            name, version = line.split("==")
            out[name.strip()] = version.split()[0].rstrip("\\").strip()
    return out


# --------------------------------------------------------------------------- contents


def test_index_contents(pypi_root):
    files = index.load(pypi_root)["files"]
    for fn, e in files.items():
        data = (pypi_root / "files" / fn).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e["sha256"] and len(data) == e["size"]
        assert e["upload-time"].endswith("Z")
    assert files["requests-2.31.0-py3-none-any.whl"]["upload-time"].startswith(
        "2023-05-22T15:12:42"
    )
    charset = [fn for fn in files if fn.startswith("charset_normalizer-3.3.2-")]
    assert "charset_normalizer-3.3.2-py3-none-any.whl" in charset
    assert any("cp311-cp311-manylinux" in fn and "x86_64" in fn for fn in charset)
    projects = {e["project"] for e in files.values()}
    assert {"requests", "urllib3", "idna", "certifi", "charset-normalizer", "six", "attrs", "packaging",
            "setuptools", "wheel", "imgb-hello", "imgb-uses-six", "imgb-conflict", "imgb-sdist"} <= projects  # fmt: skip
    hello = {
        e["version"]: e["upload-time"][:10] for e in files.values() if e["project"] == "imgb-hello"
    }
    assert hello == {"1.0": "2024-01-01", "1.1": "2024-06-01", "2.0": "2025-01-01"}
    sdists = [fn for fn, e in files.items() if e["project"] == "imgb-sdist"]
    assert sdists == ["imgb_sdist-0.1.tar.gz"]
    with zipfile.ZipFile(pypi_root / "files/imgb_uses_six-1.0-py3-none-any.whl") as zf:
        assert "Requires-Dist: six\n" in zf.read("imgb_uses_six-1.0.dist-info/METADATA").decode()
    with zipfile.ZipFile(pypi_root / "files/imgb_conflict-1.0-py3-none-any.whl") as zf:
        assert (
            "Requires-Dist: six<1.0\n" in zf.read("imgb_conflict-1.0.dist-info/METADATA").decode()
        )


def test_local_distributions_are_byte_deterministic(pypi_root, tmp_path):
    code = (
        f"import sys, pathlib; sys.path.insert(0, {str(PYPI_DIR)!r}); import build; "
        f"build.build_local(pathlib.Path({str(tmp_path / 're')!r}))"
    )
    subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "7"},
        timeout=120,
    )
    rebuilt = sorted((tmp_path / "re" / "files").iterdir())
    assert len(rebuilt) >= 6
    for p in rebuilt:
        assert p.read_bytes() == (pypi_root / "files" / p.name).read_bytes(), p.name


# --------------------------------------------------------------------------- simple API


def test_simple_api_json_and_html(pypi, pypi_root):
    status, headers, body = get(f"{pypi.url}/imgb-hello/", PIP_ACCEPT)
    assert status == 200 and headers["Content-Type"] == JSON_TYPE
    doc = json.loads(body)
    assert doc["meta"]["api-version"] == "1.1" and doc["name"] == "imgb-hello"
    assert doc["versions"] == ["1.0", "1.1", "2.0"]
    files = index.load(pypi_root)["files"]
    for f in doc["files"]:
        e = files[f["filename"]]
        assert f["hashes"]["sha256"] == e["sha256"] and f["upload-time"] == e["upload-time"]
        assert f["size"] == e["size"] and f["requires-python"] == ">=3.8"
        st, _, data = get(pypi.base + f["url"])
        assert st == 200 and hashlib.sha256(data).hexdigest() == e["sha256"]
        st, _, meta = get(pypi.base + f["url"] + ".metadata")
        assert st == 200 and hashlib.sha256(meta).hexdigest() == f["core-metadata"]["sha256"]

    status, headers, body = get(f"{pypi.url}/imgb-hello/", "text/html")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    html = body.decode()
    e = files["imgb_hello-1.0-py3-none-any.whl"]
    assert f'href="/files/imgb_hello-1.0-py3-none-any.whl#sha256={e["sha256"]}"' in html
    assert 'data-requires-python="&gt;=3.8"' in html
    assert get(f"{pypi.url}/imgb-hello/", "*/*")[1]["Content-Type"].startswith("text/html")
    assert get(f"{pypi.url}/imgb-hello/", "application/vnd.pypi.simple.v1+html")[1][
        "Content-Type"
    ] == ("application/vnd.pypi.simple.v1+html")
    assert get(f"{pypi.url}/imgb-hello/", "application/xml")[0] == 406

    st, h, body = get(f"{pypi.url}/", JSON_TYPE)
    names = [p["name"] for p in json.loads(body)["projects"]]
    assert "imgb-hello" in names and "charset-normalizer" in names
    # PEP 503 normalization: a non-normalized name redirects (urllib follows it)
    st, h, body = get(f"{pypi.url}/Imgb_Hello/", JSON_TYPE)
    assert st == 200 and json.loads(body)["name"] == "imgb-hello"
    assert get(f"{pypi.url}/no-such-project/")[0] == 404
    # revalidation
    st, h, _ = get(f"{pypi.url}/six/", JSON_TYPE)
    assert h["Cache-Control"] == "no-cache"
    st, _, _ = get(f"{pypi.url}/six/", JSON_TYPE, {"If-None-Match": h["ETag"]})
    assert st == 304


# --------------------------------------------------------------------------- clients


def test_uv_compile_with_hashes(pypi, pypi_root, tmp_path):
    p = compile_pins(["imgb-hello", "requests"], pypi.url, tmp_path, "--generate-hashes")
    assert pins(p.stdout) == {
        "certifi": "2023.11.17", "charset-normalizer": "3.3.2", "idna": "3.6", "imgb-hello": "2.0",
        "requests": "2.31.0", "urllib3": "2.0.7",
    }  # fmt: skip
    files = index.load(pypi_root)["files"]
    hashes = {
        line.split("sha256:")[1].strip(" \\")
        for line in p.stdout.splitlines()
        if "--hash=sha256:" in line
    }
    assert files["imgb_hello-2.0-py3-none-any.whl"]["sha256"] in hashes
    assert (
        files[
            "charset_normalizer-3.3.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
        ]["sha256"]
        in hashes
    )
    assert files["requests-2.31.0-py3-none-any.whl"]["sha256"] in hashes


@pytest.mark.parametrize(
    ("cutoff", "version"), [("2024-03-01", "1.0"), ("2024-07-01T00:00:00Z", "1.1"), (None, "2.0")]
)
def test_uv_exclude_newer(pypi, tmp_path, cutoff, version):
    extra = ["--exclude-newer", cutoff] if cutoff else []
    p = compile_pins(["imgb-hello", "requests"], pypi.url, tmp_path, *extra)
    got = pins(p.stdout)
    assert got["imgb-hello"] == version and got["requests"] == "2.31.0"


def test_uv_compile_other_platform(pypi, tmp_path):
    src = tmp_path / "r.in"
    src.write_text("requests\n")
    p = uv("pip", "compile", "--no-config", str(src), "--index-url", pypi.url, "--python-version", "3.11",
           "--python-platform", "aarch64-apple-darwin", "--no-header", cache=tmp_path / "c")  # fmt: skip
    assert pins(p.stdout)["charset-normalizer"] == "3.3.2"


def test_uv_install_runs_console_script(pypi, tmp_path):
    venv = tmp_path / "venv"
    uv("venv", "--no-config", "--python", sys.executable, str(venv), cache=tmp_path / "c")
    uv("pip", "install", "--no-config", "--python", str(venv / "bin/python"), "--index-url", pypi.url,
       "imgb-hello==1.1", "imgb-uses-six", cache=tmp_path / "c")  # fmt: skip
    out = subprocess.run([str(venv / "bin/imgb-hello")], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "imgb-hello 1.1"
    out = subprocess.run([str(venv / "bin/python"), "-c", "import imgb_uses_six as m; print(m.SIX)"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.stdout.strip() == "1.16.0"


def test_conflicting_pin_fails(pypi, tmp_path):
    p = compile_pins(["imgb-conflict", "six==1.16.0"], pypi.url, tmp_path, check=False)
    assert p.returncode != 0 and "six" in p.stderr


def test_pip_download(pypi, pypi_root, tmp_path):
    dest = tmp_path / "dl"
    p = subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "download", "--no-deps", "--no-cache-dir", "--index-url",
         pypi.url, "-d", str(dest), "imgb-hello==1.1", "requests==2.31.0"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    got = sorted(x.name for x in dest.iterdir())
    assert got == ["imgb_hello-1.1-py3-none-any.whl", "requests-2.31.0-py3-none-any.whl"]
    for name in got:
        assert (dest / name).read_bytes() == (pypi_root / "files" / name).read_bytes()


def _wheel_has_module(whl: Path) -> bool:
    with zipfile.ZipFile(whl) as zf:
        return "imgb_sdist/__init__.py" in zf.namelist()


def test_sdist_builds_offline_with_uv(pypi, pypi_root, tmp_path):
    sdist = pypi_root / "files/imgb_sdist-0.1.tar.gz"
    out1, out2 = tmp_path / "a", tmp_path / "b"
    uv("build", "--no-config", "--wheel", str(sdist), "--no-index", "--find-links", str(pypi_root / "files"),
       "-o", str(out1), cache=tmp_path / "c1")  # fmt: skip
    uv(
        "build",
        "--no-config",
        "--wheel",
        str(sdist),
        "--index-url",
        pypi.url,
        "-o",
        str(out2),
        cache=tmp_path / "c2",
    )
    for out in (out1, out2):
        assert _wheel_has_module(out / "imgb_sdist-0.1-py3-none-any.whl")


def test_sdist_builds_offline_with_pip(pypi, tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "pip", "--isolated", "wheel", "--no-deps", "--no-cache-dir", "--index-url",
         pypi.url, "-w", str(tmp_path), "imgb-sdist==0.1"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert _wheel_has_module(tmp_path / "imgb_sdist-0.1-py3-none-any.whl")


def test_new_release_shows_up_live(pypi_root, tmp_path):
    root = index.copy_index(pypi_root, tmp_path / "idx")
    with Server(root) as srv:
        cache = tmp_path / "uv-cache"
        assert (
            pins(compile_pins(["imgb-hello"], srv.url, tmp_path, cache=cache).stdout)["imgb-hello"]
            == "2.0"
        )
        index.make_wheel(
            root,
            "imgb-hello",
            "3.0",
            {"imgb_hello/__init__.py": '__version__ = "3.0"\n'},
            upload="2025-06-01",
        )
        assert (
            pins(compile_pins(["imgb-hello"], srv.url, tmp_path, cache=cache).stdout)["imgb-hello"]
            == "3.0"
        )
        old = compile_pins(
            ["imgb-hello"], srv.url, tmp_path, "--exclude-newer", "2025-03-01", cache=cache
        )
        assert pins(old.stdout)["imgb-hello"] == "2.0"
    assert "imgb_hello-3.0-py3-none-any.whl" not in index.load(pypi_root)["files"]


def test_basic_auth(pypi_root, tmp_path):
    with Server(pypi_root, "--auth", "alice:s3cret") as srv:
        assert get(f"{srv.url}/six/")[0] == 401
        token = base64.b64encode(b"alice:s3cret").decode()
        assert get(f"{srv.url}/six/", headers={"Authorization": f"Basic {token}"})[0] == 200
        authed = srv.url.replace("http://", "http://alice:s3cret@")
        assert pins(compile_pins(["imgb-hello"], authed, tmp_path).stdout)["imgb-hello"] == "2.0"
        bad = srv.url.replace("http://", "http://alice:wrong@")
        assert (
            compile_pins(
                ["imgb-hello"], bad, tmp_path, cache=tmp_path / "c2", check=False
            ).returncode
            != 0
        )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_tls(pypi_root, tmp_path):
    tls = _load("tls").make_tls(tmp_path / "tls")
    with Server(pypi_root, "--certfile", str(tls["cert"]), "--keyfile", str(tls["key"])) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        import ssl

        st, _, _ = get(f"{srv.url}/six/", context=ssl.create_default_context(cafile=str(tls["ca"])))
        assert st == 200
        p = compile_pins(["imgb-hello"], srv.url, tmp_path, env={"SSL_CERT_FILE": str(tls["ca"])})
        assert pins(p.stdout)["imgb-hello"] == "2.0"
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--isolated",
                "download",
                "--no-deps",
                "--no-cache-dir",
                "--index-url",
                srv.url,
                "-d",
                str(tmp_path / "dl"),
                "imgb-hello==1.0",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "SSL_CERT_FILE": str(tls["ca"])},
        )  # fmt: skip  (pip 26 verifies through truststore: it honours SSL_CERT_FILE, not --cert)
        assert p.returncode == 0, p.stderr
