"""Lock formats without services: write, read back, same full_id; readers' refusals.

Envs here are built from package fields directly (fake hashes are fine: nothing is fetched).
pixi goes through py-rattler, so it runs in a child process.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from interop_support import ROOT, python

from imagebuilder.env import ResolvedEnv
from imagebuilder.errors import BadInput, IntegrityError
from imagebuilder.lockfiles import export_lock, load_lock, read_lock, sniff
from imagebuilder.lockfiles.packages import conda_package, pypi_package
from imagebuilder.spec import make_spec

CH = "https://conda.example.org/chan"
NAMES = {
    "conda-lock": "conda-lock.yml",
    "pixi": "pixi.lock",
    "explicit": "explicit.txt",
    "requirements": "requirements.txt",
    "pylock": "pylock.toml",
}


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def conda(subdir: str, fn: str, depends=(), **fields):
    return conda_package(
        f"{CH}/{subdir}/{fn}", sha256=h(fn), md5=md5(fn), size=1000, depends=depends,
        fields={"license": "MIT", "timestamp": 1704067200000, **fields},
    )  # fmt: skip


def wheel(fn: str, arch: str = "linux-64", host="https://files.example.org/packages"):
    return pypi_package(f"{host}/{fn}", sha256=h(fn), arch=arch, size=500)


def make_env(arch: str = "linux-64", pypi: bool = True) -> ResolvedEnv:
    pkgs = [
        conda(arch, "python-3.11.7-h_0.conda", ("openssl >=3", "python_abi 3.11.* *_cp311")),
        conda(arch, "openssl-3.0.19-h_0.conda"),
        conda(arch, "python_abi-3.11-0_cp311.tar.bz2"),
        conda("noarch", "tinyfoo-2.0-pyh_0.conda", ("python >=3.8",)),
    ]
    if pypi:
        pkgs += [
            wheel("six-1.16.0-py2.py3-none-any.whl"),
            wheel(
                "charset_normalizer-3.3.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
            ),
        ]
    spec = make_spec(arch=arch, conda=["tinyfoo", "python=3.11"], channels=[CH])
    return ResolvedEnv(spec, tuple(pkgs))


@pytest.mark.parametrize("fmt", ["conda-lock", "explicit", "requirements", "pylock"])
def test_round_trip_same_full_id(tmp_path, fmt):
    env = make_env()
    path = tmp_path / NAMES[fmt]
    path.write_text(export_lock([env], fmt))
    back = load_lock(path, "linux-64")
    assert back.full_id == env.full_id
    assert [p.identity for p in back.packages] == [p.identity for p in env.packages]
    # req_id comes from the lock's bytes: the same file gives the same req_id, another file not
    assert back.spec.lock == hashlib.sha256(path.read_bytes()).hexdigest()
    assert load_lock(path, "linux-64").req_id == back.req_id
    assert back.req_id != env.req_id
    # conda packages come back installable: a repodata record with the archive's identity
    for p in back.conda_packages():
        assert p.record["fn"] == p.filename and p.record["sha256"] == p.sha256
        assert p.record["url"] == p.url and p.record["subdir"] == p.subdir


def test_round_trip_pixi_in_child_process(tmp_path):
    env = make_env()
    (tmp_path / "env.json").write_text(json.dumps(env.to_json()))
    code = f"""
import json
from pathlib import Path
from imagebuilder.env import ResolvedEnv
from imagebuilder.lockfiles import export_lock, load_lock
env = ResolvedEnv.from_json(json.loads(Path({str(tmp_path / "env.json")!r}).read_text()))
p = Path({str(tmp_path / "pixi.lock")!r})
p.write_text(export_lock([env], "pixi"))
back = load_lock(p, "linux-64")
print(json.dumps([back.full_id, env.full_id, back.conda_packages()[0].record]))
"""
    out = python(code)
    assert out.returncode == 0, out.stderr[-3000:]
    got, want, record = json.loads(out.stdout.splitlines()[-1])
    assert got == want
    assert record["license"] == "MIT" and record["sha256"]
    assert "version: " in (tmp_path / "pixi.lock").read_text()


def test_conda_lock_holds_several_arches(tmp_path):
    a, b = make_env("linux-64"), make_env("linux-aarch64", pypi=False)
    path = tmp_path / "conda-lock.yml"
    path.write_text(export_lock([a, b], "conda-lock"))
    assert load_lock(path, "linux-64").full_id == a.full_id
    assert load_lock(path, "linux-aarch64").full_id == b.full_id
    with pytest.raises(BadInput, match="no packages for osx-arm64"):
        load_lock(path, "osx-arm64")


def test_single_arch_formats_refuse_several_envs():
    with pytest.raises(BadInput, match="hold one arch"):
        export_lock([make_env("linux-64"), make_env("linux-aarch64")], "explicit")


def test_hand_written_conda_lock(tmp_path):
    """The format as docs/lockfiles.md documents it, written by hand (no imgbuild header)."""
    six = "six-1.16.0-pyh_0.tar.bz2"
    path = tmp_path / "team.conda-lock.yml"
    path.write_text(
        f"""version: 1
metadata:
  content_hash: {{linux-64: abc}}
  channels: [{{url: "{CH}", used_env_vars: []}}]
  platforms: [linux-64]
  sources: [environment.yml]
package:
  - name: six
    version: "1.16.0"
    manager: conda
    platform: linux-64
    dependencies: {{python: ""}}
    url: {CH}/noarch/{six}
    hash: {{md5: {md5(six)}, sha256: {h(six)}}}
    category: main
    optional: false
  - name: idna
    version: "3.6"
    manager: pip
    platform: linux-64
    dependencies: {{}}
    url: https://files.example.org/idna-3.6-py3-none-any.whl
    hash: {{sha256: {h("idna")}}}
    category: main
    optional: false
"""
    )
    env = load_lock(path, "linux-64")
    assert [p.label for p in env.packages] == ["six-1.16.0-pyh_0", "idna==3.6"]
    six_pkg = env.package("six")
    assert six_pkg.record["noarch"] == "python" and six_pkg.channel == CH
    assert env.spec.channels == (CH,) and env.spec.lock


def test_sniffing_by_name_and_content(tmp_path):
    env = make_env()
    for fmt in NAMES:
        if fmt == "pixi":
            continue
        text = export_lock([env], fmt)
        assert sniff(tmp_path / NAMES[fmt], text) == fmt
        assert sniff(tmp_path / "lock.txt", text) == fmt, fmt  # content alone
    with pytest.raises(BadInput, match="cannot tell"):
        sniff(tmp_path / "x.txt", "hello\n")


def test_explicit_md5_only_lines_are_completed_from_the_channel(tmp_path):
    """conda's classic explicit files carry md5 only: the sha256 comes from repodata."""
    chan = tmp_path / "chan"
    (chan / "noarch").mkdir(parents=True)
    fn = "tinyfoo-1.0-pyh_0.tar.bz2"
    rec = {"name": "tinyfoo", "version": "1.0", "build": "pyh_0", "build_number": 0,
           "subdir": "noarch", "noarch": "python", "depends": ["python >=3.8"],
           "md5": md5(fn), "sha256": h(fn), "size": 7, "license": "BSD-3-Clause"}  # fmt: skip
    (chan / "noarch" / "repodata.json").write_text(json.dumps({"packages": {fn: rec}}))
    url = chan.as_uri() + f"/noarch/{fn}"
    path = tmp_path / "conda-linux-64.lock"
    path.write_text(f"# platform: linux-64\n@EXPLICIT\n{url}#{md5(fn)}\n")
    (p,) = load_lock(path, "linux-64").packages
    assert p.sha256 == h(fn) and p.depends == ("python >=3.8",)
    assert p.record["license"] == "BSD-3-Clause"
    path.write_text(f"@EXPLICIT\n{url}#{'0' * 32}\n")
    with pytest.raises(IntegrityError, match="md5"):
        load_lock(path, "linux-64")


def test_requirements_without_urls_are_matched_by_hash_on_find_links(tmp_path):
    """pip-compile / uv pip compile --generate-hashes output: several hashes, markers."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for w in ("six-1.16.0-py2.py3-none-any.whl", "idna-3.6-py3-none-any.whl"):
        shutil.copy(ROOT / "ci" / "cache" / "wheels" / w, wheels / w)
    sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in wheels.iterdir()}
    req = tmp_path / "requirements.txt"
    req.write_text(
        f"--find-links {wheels}\n"
        "six==1.16.0 \\\n"
        f"    --hash=sha256:{'1' * 64} \\\n"
        f"    --hash=sha256:{sha['six-1.16.0-py2.py3-none-any.whl']}\n"
        "    # via imgb-uses-six\n"
        f"idna==3.6 ; sys_platform == 'linux' --hash=sha256:{sha['idna-3.6-py3-none-any.whl']}\n"
        f"pywin32==306 ; sys_platform == 'win32' --hash=sha256:{'2' * 64}\n"
    )
    env = load_lock(req, "linux-64", python="3.11")
    assert sorted(p.label for p in env.packages) == ["idna==3.6", "six==1.16.0"]
    assert env.spec.python_from_base and env.spec.python == "3.11.*"
    assert env.package("six").url == (wheels / "six-1.16.0-py2.py3-none-any.whl").as_uri()
    osx = load_lock(req, "osx-arm64", python="3.11")  # the linux-only marker drops idna
    assert [p.name for p in osx.packages] == ["six"]


def test_pylock_picks_the_wheel_of_the_target(tmp_path):
    files = {
        "linux": "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "mac": "numpy-2.0.0-cp311-cp311-macosx_11_0_arm64.whl",
        "old": "numpy-2.0.0-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    }
    wheels = ", ".join(
        f'{{ url = "https://f.example/{fn}", hashes = {{ sha256 = "{h(fn)}" }} }}'
        for fn in files.values()
    )
    path = tmp_path / "pylock.toml"
    path.write_text(
        'lock-version = "1.0"\ncreated-by = "hand"\n\n'
        f'[[packages]]\nname = "numpy"\nversion = "2.0.0"\nwheels = [{wheels}]\n\n'
        '[[packages]]\nname = "colorama"\nversion = "0.4.6"\nmarker = "sys_platform == \'win32\'"\n'
        f'wheels = [{{ url = "https://f.example/colorama-0.4.6-py2.py3-none-any.whl", hashes = {{ sha256 = "{h("c")}" }} }}]\n'
    )
    linux = load_lock(path, "linux-64", python="3.11")
    mac = load_lock(path, "osx-arm64", python="3.11")
    assert [p.filename for p in linux.packages] == [files["linux"]]
    assert [p.filename for p in mac.packages] == [files["mac"]]
    assert linux.packages[0].subdir == "linux-64"
    with pytest.raises(BadInput, match="no wheel fits"):
        load_lock(path, "linux-aarch64", python="3.11")


def test_credentials_in_lock_urls_never_reach_the_env(tmp_path):
    from imagebuilder.sources import credentials

    fn = "tinyfoo-2.0-pyh_0.conda"
    path = tmp_path / "explicit.txt"
    path.write_text(
        f"@EXPLICIT\nhttps://conda.example.org/t/tok-SECRET/chan/noarch/{fn}#{h(fn)}\n"
        f"# pip six @ https://u:pw-SECRET@pypi.example.org/six-1.16.0-py2.py3-none-any.whl#sha256={h('s')}\n"
    )
    try:
        env = load_lock(path, "linux-64")
        text = json.dumps(env.to_json())
        assert "SECRET" not in text
        # ... but kept for this process's downloads of those hosts
        assert credentials.lookup("https://conda.example.org/chan/x").conda_token == "tok-SECRET"
        assert credentials.lookup("https://pypi.example.org/x").basic == ("u", "pw-SECRET")
    finally:
        credentials.forget_all()


@pytest.mark.parametrize(
    "name,text,match",
    [
        ("conda-lock.yml", "version: 1\npackage: [\n", "invalid YAML"),
        ("conda-lock.yml", "version: 2\npackage: []\n", "version 2 is not supported"),
        ("explicit.txt", f"{CH}/noarch/a-1-0.conda\n@EXPLICIT\n", "before @EXPLICIT"),
        ("explicit.txt", "# platform: osx-arm64\n@EXPLICIT\n", "for osx-arm64, not linux-64"),
        ("requirements.txt", "six>=1.0 --hash=sha256:" + "a" * 64 + "\n", "not pinned"),
        ("requirements.txt", "-r other.txt\nsix==1 --hash=sha256:" + "a" * 64, "-r is not"),
        ("requirements.txt", "six==1.16.0 --hash=sha256:abc\n", "not a sha256"),
        ("pylock.toml", 'lock-version = "2.0"\n', "not supported"),
        ("pylock.toml", 'lock-version = "1.0"\n[[packages]\n', "invalid TOML"),
    ],
)
def test_bad_lock_files_are_one_clear_error(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(BadInput, match=match):
        read_lock(path, "linux-64", python="3.11")


def test_a_package_locked_twice_is_refused(tmp_path):
    env = make_env(pypi=False)
    text = export_lock([env], "explicit")
    line = next(x for x in text.splitlines() if "tinyfoo" in x)
    other = line.replace("tinyfoo-2.0", "tinyfoo-1.0").split("#")[0] + "#" + h("x")
    path = tmp_path / "explicit.txt"
    path.write_text(text + other + "\n")
    with pytest.raises(BadInput, match="locked twice"):
        load_lock(path, "linux-64")


def test_missing_lock_file_is_not_found(tmp_path):
    from imagebuilder.errors import NotFound

    with pytest.raises(NotFound):
        load_lock(tmp_path / "nope.yml", "linux-64")


def test_exports_are_deterministic():
    env = make_env()
    for fmt in ("conda-lock", "explicit", "requirements", "pylock"):
        assert export_lock([env], fmt) == export_lock([make_env()], fmt)


def test_uv_lock_needs_its_project(tmp_path):
    path = tmp_path / "uv.lock"
    path.write_text('version = 1\nrequires-python = ">=3.11"\n\n[[package]]\nname = "x"\n')
    with pytest.raises(BadInput, match="no pyproject.toml"):
        load_lock(path, "linux-64")


def test_uv_lock_through_uv_export(tmp_path):
    """A real uv project locked offline against local wheels; imported without solving."""
    wheels = ROOT / "ci" / "cache" / "wheels"
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "demo"\nversion = "0.1"\nrequires-python = ">=3.11"\n'
        'dependencies = ["six", "idna"]\n[tool.uv]\npackage = false\n'
    )
    import subprocess

    from uv import find_uv_bin

    out = subprocess.run(
        [find_uv_bin(), "lock", "--offline", "--no-index", "--find-links", str(wheels)],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    env = load_lock(tmp_path / "uv.lock", "linux-64", python="3.11")
    got = {p.name: p.sha256 for p in env.packages}
    want = {
        n: hashlib.sha256((wheels / f).read_bytes()).hexdigest()
        for n, f in (
            ("six", "six-1.16.0-py2.py3-none-any.whl"),
            ("idna", "idna-3.6-py3-none-any.whl"),
        )
    }
    assert got == want
    assert env.spec.python_from_base
    assert Path(env.package("six").url).name == "six-1.16.0-py2.py3-none-any.whl"
