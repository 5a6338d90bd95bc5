"""Small parts of the resolver: wheel choice for another machine, source identities, stub
wheels for conda-provided packages, mapping of conda packages to PyPI names."""

from __future__ import annotations

import hashlib
import os
import zipfile

from imagebuilder.env import Package
from imagebuilder.ids import sha256_json
from imagebuilder.resolve.base import Provided
from imagebuilder.resolve.mixed import provided, write_stub
from imagebuilder.resolve.sources import git_source_sha256, tree_sha256
from imagebuilder.resolve.wheeltags import is_pure, rank, wheel_build

CN = "charset_normalizer-3.3.2-cp311-cp311-{}.whl"
WHEELS = [
    CN.format("manylinux_2_17_x86_64.manylinux2014_x86_64"),
    CN.format("manylinux_2_17_aarch64.manylinux2014_aarch64"),
    CN.format("macosx_11_0_arm64"),
    CN.format("musllinux_1_1_x86_64"),
    "charset_normalizer-3.3.2-py3-none-any.whl",
    "charset_normalizer-3.3.2-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    CN.format("manylinux_2_31_x86_64"),
]


def best(subdir, python="3.11.7", sys_packages=None):
    ranked = [(rank(w, subdir, python, sys_packages or {}), w) for w in WHEELS]
    return min((r, w) for r, w in ranked if r is not None)[1]


def test_wheel_choice_is_for_the_target_not_the_host():
    assert best("linux-64") == WHEELS[0]
    assert best("linux-aarch64") == WHEELS[1]
    assert best("osx-arm64") == WHEELS[2]
    assert best("osx-64") == WHEELS[4]  # no x86_64 mac wheel: the pure one
    assert best("linux-64", "3.12") == WHEELS[5]
    # manylinux_2_31 needs glibc 2.31: only when the target says it has it.
    assert rank(WHEELS[6], "linux-64", "3.11", {}) is None
    assert best("linux-64", sys_packages={"__glibc": "2.31"}) == WHEELS[6]
    assert rank(WHEELS[3], "linux-64", "3.11", {}) is None  # musl is not glibc
    assert wheel_build(WHEELS[0]) == "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"
    assert is_pure(WHEELS[4]) and not is_pure(WHEELS[0])


def test_git_and_tree_identity(tmp_path):
    commit = "e30a32b346a53616e0a53409f348e1118668d2c7"
    assert git_source_sha256(commit) == hashlib.sha256(f"git:{commit}".encode()).hexdigest()
    src = tmp_path / "pkg"
    (src / "mod").mkdir(parents=True)
    (src / "mod" / "__init__.py").write_text("x = 1\n")
    (src / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(src / "run.sh", 0o755)
    os.symlink("mod/__init__.py", src / "link.py")
    expected = sha256_json(
        [
            "imgbuild-tree/v1",
            [
                ["link.py", "l", "mod/__init__.py"],
                ["mod/__init__.py", "f", hashlib.sha256(b"x = 1\n").hexdigest()],
                ["run.sh", "x", hashlib.sha256(b"#!/bin/sh\n").hexdigest()],
            ],
        ]
    )
    assert tree_sha256(src) == expected
    # Build outputs and caches do not change the identity; content does.
    (src / "build").mkdir()
    (src / "build" / "junk").write_text("j")
    (src / "mod" / "__pycache__").mkdir()
    (src / "mod" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (src / "pkg.egg-info").mkdir()
    (src / "pkg.egg-info" / "PKG-INFO").write_text("x")
    assert tree_sha256(src) == expected
    (src / "mod" / "__init__.py").write_text("x = 2\n")
    assert tree_sha256(src) != expected


def _pkg(name, version, depends=(), noarch=None):
    return Package("conda", "noarch", name, version, "0", "0" * 64, f"{name}.conda", "u",
                   depends=tuple(depends), record={"noarch": noarch} if noarch else {})  # fmt: skip


def test_provided_python_distributions():
    conda = [
        _pkg("python", "3.11.7"),
        _pkg("python_abi", "3.11"),
        _pkg("openssl", "3.0.0"),
        _pkg("six", "1.16.0", ["python"], "python"),
        _pkg("pytorch", "2.1.0", ["python >=3.11,<3.12.0a0", "libtorch"]),
        _pkg("weird", "1.0.0_custom", ["python"]),
    ]
    assert provided(conda) == [
        Provided("six", "1.16.0", "six"),
        Provided("torch", "2.1.0", "pytorch"),
    ]


def test_stub_wheel_is_a_valid_wheel(tmp_path):
    path = write_stub(tmp_path, Provided("typing-extensions", "4.8.0", "typing_extensions"))
    assert path.name == "typing_extensions-4.8.0-py3-none-any.whl"
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        meta = zf.read("typing_extensions-4.8.0.dist-info/METADATA").decode()
    assert names == {
        f"typing_extensions-4.8.0.dist-info/{n}" for n in ("METADATA", "WHEEL", "RECORD")
    }
    assert "Name: typing-extensions\nVersion: 4.8.0\n" in meta and "Requires-Dist" not in meta
    again = write_stub(tmp_path / "..", Provided("typing-extensions", "4.8.0", "typing_extensions"))
    assert again.read_bytes() == path.read_bytes()  # deterministic


def _reference_pypi_req(s: str) -> str:
    """normalize_pypi_req's rule through packaging (the path its fast path must agree with)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    r = Requirement(s.strip())
    out = canonicalize_name(r.name)
    if r.extras:
        out += "[" + ",".join(sorted(canonicalize_name(e) for e in r.extras)) + "]"
    if r.specifier:
        out += ",".join(sorted(str(sp) for sp in r.specifier))
    return out


def test_fast_pypi_normalization_agrees_with_packaging():
    from imagebuilder.spec import _simple_pypi_req, normalize_pypi_req

    cases = [
        "requests", "Requests", "  six  ", "Foo_Bar.baz", "a-b_c.d",
        "requests>=2.31", "requests >= 2.31 , < 3", "numpy==1.26.4", "x!=1.0,!=1.1",
        "pkg~=1.4", "pkg~=1.4.2", "pkg<2", "pkg>1", "pkg<=2.0.0", "a>=2,>=2,<3",
        "Foo_Bar[Extra_B,a]==1.0", "foo[ b , A ]>=1", "x[y]", "ZOPE.interface>=5",
        "pkg==01.002", "p>=0", "q<=10.20.30.40",
    ]  # fmt: skip
    for c in cases:
        assert _simple_pypi_req(c.strip()) is not None, c  # the fast path takes these
        assert normalize_pypi_req(c) == _reference_pypi_req(c), c
    # Shapes the fast path leaves to packaging (same result as before).
    for c in ["pkg==1.*", "pkg>=1.0a1", "pkg (>=1)", "pkg===x", 'six; python_version<"3"']:
        assert _simple_pypi_req(c) is None, c


def test_linux_tag_order_is_packagings():
    from packaging import tags

    from imagebuilder.resolve.wheeltags import cpython_order, platforms

    for subdir, sys_packages in [("linux-64", {}), ("linux-aarch64", {}),
                                 ("linux-64", {"__glibc": "2.31"}), ("linux-64", {"__glibc": "2.17"})]:  # fmt: skip
        plats = platforms(subdir, sys_packages)
        for major, minor in [(3, 8), (3, 11), (3, 13)]:
            interp = f"cp{major}{minor}"
            ref = list(tags.cpython_tags((major, minor), [interp], plats))
            ref += list(tags.compatible_tags((major, minor), interp, plats))
            ours = [tags.Tag(*t) for t in cpython_order(major, minor, plats)]
            assert list(dict.fromkeys(ours)) == list(dict.fromkeys(ref)), (subdir, minor)


def test_wheel_tags_parse_like_packaging():
    from packaging.utils import parse_wheel_filename

    from imagebuilder.resolve.wheeltags import canonicalize_name, wheel_tags

    for w in [
        *WHEELS,
        "six-1.16.0-py2.py3-none-any.whl",
        "x-1.0-1build-cp311-cp311-linux_x86_64.whl",
    ]:
        ref = {(t.interpreter, t.abi, t.platform) for t in parse_wheel_filename(w)[3]}
        assert set(wheel_tags(w)) == ref, w
    assert wheel_tags("not-a-wheel.tar.gz") is None and wheel_tags("bad.whl") is None
    assert canonicalize_name("Foo_Bar.baz--x") == "foo-bar-baz-x"
