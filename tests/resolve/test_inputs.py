"""Input files and flags -> EnvSpecs (no rig needed)."""

from __future__ import annotations

import textwrap

import pytest

from imagebuilder.config import load_config
from imagebuilder.errors import BadInput
from imagebuilder.inputs.collect import Flags, collect
from imagebuilder.inputs.envyml import parse_environment_yml
from imagebuilder.inputs.requirements import parse_requirements
from imagebuilder.inputs.tomlfiles import parse_imgbuild_toml, parse_pyproject


def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def config(tmp_path, **flags):
    return load_config(flags=flags, environ={}, cwd=tmp_path, home=tmp_path)


def test_requirements_txt(tmp_path):
    req = write(
        tmp_path / "requirements.txt",
        """
        # a comment
        --index-url https://u:pw@idx.example/simple
        --extra-index-url=https://extra.example/simple
        -f ./wheels
        --pre
        Requests>=2.31  # trailing comment
        six; python_version < "3.12"
        pkg @ https://files.example/pkg-1.0-py3-none-any.whl#sha256=abc
        numpy==1.26 \\
            --hash=sha256:0123
        --conda-pkg ffmpeg >=6
        --conda-channel conda-forge
        --sys-pkg __glibc==2.31
        python>=3.10
        ./local/pkg
        """,
    )
    r = parse_requirements(req)
    assert [i.value for i in r.pypi] == [
        "requests>=2.31",
        'six; python_version < "3.12"',
        "pkg @ https://files.example/pkg-1.0-py3-none-any.whl#sha256=abc",
        "numpy==1.26",
        "./local/pkg",
    ]
    assert r.pypi[0].origin == f"{req}:6" and r.pypi[3].origin == f"{req}:9"
    assert r.index_url.value == "https://u:pw@idx.example/simple"
    assert [i.value for i in r.extra_index_urls] == ["https://extra.example/simple"]
    assert [i.value for i in r.find_links] == ["./wheels"] and r.pre
    assert [i.value for i in r.conda] == ["ffmpeg>=6"] and r.conda[0].origin == f"{req}:11"
    assert [i.value for i in r.channels] == ["conda-forge"]
    assert r.sys == (("__glibc", "2.31", f"{req}:13"),)
    assert r.python.value == ">=3.10"


def test_requirements_include_and_errors(tmp_path):
    write(tmp_path / "base.txt", "six\n")
    top = write(tmp_path / "requirements.txt", "-r base.txt\nrequests\n")
    assert [i.value for i in parse_requirements(top).pypi] == ["six", "requests"]
    loop = write(tmp_path / "loop.txt", "-r loop.txt\n")
    with pytest.raises(BadInput, match="includes itself"):
        parse_requirements(loop)
    for text, line in [
        ("ok\n-c constraints.txt\n", 2),
        ("ok\n\n--no-such-option\n", 3),
        ("a >>> 1\n", 1),
        ("--sys-pkg glibc==2\n", 1),
        ("-i https://a/simple\n-i https://b/simple\n", 2),
    ]:
        bad = write(tmp_path / "bad.txt", text)
        with pytest.raises(BadInput) as e:
            parse_requirements(bad)
        assert e.value.message.startswith(f"{bad}:{line}:"), e.value.message
    with pytest.raises(BadInput, match="no such file"):
        parse_requirements(tmp_path / "missing.txt")


def test_environment_yml(tmp_path):
    env = write(
        tmp_path / "environment.yml",
        """
        name: demo
        channels:
          - https://tok@conda.example/t/abc/main
          - conda-forge
        dependencies:
          - python=3.11
          - NumPy >=1.26
          - conda-forge::pandas
          - pip:
            - --extra-index-url https://extra.example/simple
            - requests>=2
          - sys:
            - __cuda=12.1
        sys:
          __glibc: "2.31"
        """,
    )
    r = parse_environment_yml(env)
    assert [i.value for i in r.channels] == ["https://tok@conda.example/t/abc/main", "conda-forge"]
    assert [i.value for i in r.conda] == ["python=3.11", "numpy>=1.26", "conda-forge::pandas"]
    assert r.conda[1].origin == f"{env}:7"
    assert [i.value for i in r.pypi] == ["requests>=2"] and r.pypi[0].origin == f"{env}:11"
    assert [i.value for i in r.extra_index_urls] == ["https://extra.example/simple"]
    assert {(n, v) for n, v, _ in r.sys} == {("__cuda", "12.1"), ("__glibc", "2.31")}


@pytest.mark.parametrize(
    "text,line",
    [
        ("dependencies:\n  - numpy\n   - bad: [x\n", None),
        ("dependencies:\n  - numpy\n  - '=nothing'\n", 3),
        ("dependencies:\n  - conda: [x]\n", 2),
        ("channels: conda-forge\n", 1),
        ("depends:\n  - numpy\n", 1),
        ("dependencies:\n  - sys:\n    - glibc=2\n", 3),
    ],
)
def test_environment_yml_errors(tmp_path, text, line):
    env = write(tmp_path / "environment.yml", text)
    with pytest.raises(BadInput) as e:
        parse_environment_yml(env)
    assert e.value.message.startswith(f"{env}:{line if line else ''}"), e.value.message


def test_pyproject(tmp_path):
    pp = write(
        tmp_path / "pyproject.toml",
        """
        [build-system]
        requires = ["setuptools"]

        [project]
        name = "demo"
        requires-python = ">=3.10"
        dependencies = [
            "requests>=2",
            "Six",
        ]
        """,
    )
    r = parse_pyproject(pp)
    assert [i.value for i in r.pypi] == ["requests>=2", "six"]
    assert r.pypi[1].origin == f"{pp}:9" and r.python.value == ">=3.10"
    with pytest.raises(BadInput, match="no \\[project\\]"):
        parse_pyproject(write(tmp_path / "p2.toml", "[tool.x]\na = 1\n"))


def test_imgbuild_toml_environment(tmp_path):
    toml = write(
        tmp_path / "imgbuild.toml",
        """
        store = "/tmp/somewhere"

        [environment]
        conda = ["tinyfoo>=1"]
        pypi = ["requests"]
        channels = ["https://c.example/ch"]
        indexes = ["https://i.example/simple", "https://extra.example/simple"]
        python = "3.11"
        sys = { __glibc = "2.31" }
        arch = ["linux-64", "osx-arm64"]
        exclude_newer = "2024-06-01"
        """,
    )
    r = parse_imgbuild_toml(toml)
    assert [i.value for i in r.conda] == ["tinyfoo>=1"] and r.conda[0].origin == f"{toml}:4"
    assert r.index_url.value == "https://i.example/simple"
    assert [i.value for i in r.extra_index_urls] == ["https://extra.example/simple"]
    assert [i.value for i in r.arch] == ["linux-64", "osx-arm64"]
    assert r.python.value == "3.11" and r.exclude_newer.value == "2024-06-01"
    bad = write(tmp_path / "bad.toml", "[environment]\ncondaa = ['x']\n")
    with pytest.raises(BadInput, match="unknown key 'condaa'"):
        parse_imgbuild_toml(bad)


def test_collect_defaults_and_implicit_python(tmp_path):
    c = collect(Flags(pypi=("requests",), arch=("linux-64",)), config(tmp_path), cwd=tmp_path)
    (spec,) = c.specs
    assert spec.channels == ("conda-forge",) and spec.indexes == ("https://pypi.org/simple",)
    assert spec.implicit_conda == ("python",)
    cfg = config(tmp_path, channels="https://mirror.example/cf", index_url="https://i.example/s")
    (spec,) = collect(Flags(pypi=("requests",), arch=("linux-64",)), cfg, cwd=tmp_path).specs
    assert spec.channels == ("https://mirror.example/cf",)
    assert spec.indexes == ("https://i.example/s",)
    # Pure conda: no index recorded; python from base: no channel recorded.
    (conda_only,) = collect(Flags(conda=("x",), arch=("linux-64",)), None, cwd=tmp_path).specs
    assert conda_only.indexes == () and conda_only.implicit_conda == ()
    (venv,) = collect(
        Flags(pypi=("x",), python="3.12", python_from_base=True, arch=("linux-64",)),
        None,
        cwd=tmp_path,
    ).specs
    assert venv.channels == () and venv.python == "3.12.*" and venv.implicit_conda == ()
    with pytest.raises(BadInput, match="python-from-base"):
        collect(Flags(conda=("x",), python_from_base=True), None, cwd=tmp_path)


def test_collect_merges_files_then_flags(tmp_path):
    req = write(tmp_path / "requirements.txt", "requests\n--conda-pkg ffmpeg\npython==3.10\n")
    env = write(
        tmp_path / "environment.yml",
        "channels: [https://a.example/ch]\ndependencies: [tinyfoo, {pip: [six]}]\n",
    )
    c = collect(
        Flags(
            requirements=(str(req),),
            environment=(str(env),),
            conda=("numpy",),
            channels=("https://u:pw@b.example/ch",),
            python="3.11",
            arch=("linux-64", "osx-arm64"),
            sys_pkgs=("__glibc==2.31",),
            exclude_newer="2024-01-02",
        ),
        None,
        cwd=tmp_path,
    )
    assert [s.arch for s in c.specs] == ["linux-64", "osx-arm64"]
    s = c.specs[0]
    assert s.conda == ("tinyfoo", "ffmpeg", "numpy")
    assert s.pypi == ("six", "requests")
    assert s.channels == ("https://a.example/ch", "https://b.example/ch")  # order kept
    assert s.python == "3.11.*"  # the flag overrides the file
    assert s.exclude_newer == "2024-01-02T00:00:00Z" and s.sys == {"__glibc": "2.31"}
    assert s.origin("ffmpeg") == f"{req}:2" and s.origin("numpy") == "--conda"
    assert c.secrets == {"https://b.example/ch": "https://u:pw@b.example/ch"}
    assert "pw" not in str(s.to_json())
    assert c.sources == (str(env), str(req))


def test_collect_conflicting_files(tmp_path):
    a = write(tmp_path / "a.txt", "x\n--index-url https://a.example/simple\n")
    b = write(tmp_path / "b.txt", "y\n--index-url https://b.example/simple\n")
    with pytest.raises(BadInput, match="set twice") as e:
        collect(Flags(requirements=(str(a), str(b))), None, cwd=tmp_path)
    assert f"{a}:2" in e.value.message and f"{b}:2" in e.value.message
    # ...unless the command line decides.
    flags = Flags(requirements=(str(a), str(b)), index_url="https://c.example/simple")
    (spec,) = collect(flags, None, cwd=tmp_path).specs
    assert spec.indexes == ("https://c.example/simple",)


def test_collect_errors(tmp_path):
    with pytest.raises(BadInput, match="empty request"):
        collect(Flags(), None, cwd=tmp_path)
    with pytest.raises(BadInput, match="unknown arch 'win-64'"):
        collect(Flags(conda=("x",), arch=("win-64",)), None, cwd=tmp_path)
    with pytest.raises(BadInput, match="--exclude-newer: bad date"):
        collect(Flags(conda=("x",), exclude_newer="last tuesday"), None, cwd=tmp_path)


def test_discovery_order(tmp_path):
    """Bare `imgbuild resolve`: ./imgbuild.toml [environment], environment.yml,
    requirements.txt, pyproject.toml -- the first one found."""
    write(tmp_path / "pyproject.toml", '[project]\nname = "p"\ndependencies = ["from-pyproject"]\n')
    write(tmp_path / "requirements.txt", "from-requirements\n")
    write(tmp_path / "environment.yml", "dependencies: [from-env-yml]\n")
    write(tmp_path / "imgbuild.toml", 'store = "/tmp/x"\n')  # config only: not an input

    def found():
        (spec,) = collect(Flags(arch=("linux-64",)), None, cwd=tmp_path).specs
        return spec.conda + spec.pypi

    assert found() == ("from-env-yml",)
    write(tmp_path / "imgbuild.toml", '[environment]\nconda = ["from-toml"]\n')
    assert found() == ("from-toml",)
    (tmp_path / "imgbuild.toml").unlink()
    (tmp_path / "environment.yml").unlink()
    assert found() == ("from-requirements",)
    (tmp_path / "requirements.txt").unlink()
    assert found() == ("from-pyproject",)
    # Naming any input on the command line turns discovery off.
    (spec,) = collect(Flags(conda=("only-this",)), None, cwd=tmp_path).specs
    assert spec.conda == ("only-this",) and spec.pypi == ()
