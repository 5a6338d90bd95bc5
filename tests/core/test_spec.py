"""EnvSpec normalization and golden req_ids: these hex values are the contract.

If one changes, every stored environment changes identity: change CONTRACT.md, docs and this
file together, and say why.
"""

import pytest

from imagebuilder.errors import BadInput
from imagebuilder.ids import canonical_json
from imagebuilder.spec import (
    EnvSpec,
    make_spec,
    normalize_conda_spec,
    normalize_date,
    normalize_pypi_req,
    normalize_python,
    parse_sys_pkg,
)


@pytest.mark.parametrize(
    "raw,norm",
    [
        ("NumPy >= 2", "numpy>=2"),
        ("numpy 1.26.* py311_0", "numpy 1.26.* py311_0"),
        ("conda-forge::pandas >=2", "conda-forge::pandas>=2"),
        ("  python   3.11.* ", "python 3.11.*"),
        ("libblas=*=*mkl", "libblas=*=*mkl"),
    ],
)
def test_conda_spec(raw, norm):
    assert normalize_conda_spec(raw) == norm


@pytest.mark.parametrize(
    "raw,norm",
    [
        ("Requests>=2.31,<3", "requests<3,>=2.31"),
        ("Foo_Bar[Extra_B,a]==1.0", "foo-bar[a,extra-b]==1.0"),
        ('six; python_version < "3.12"', 'six; python_version < "3.12"'),
        ("git+https://user:secret@github.com/o/r@abc123", "git+https://github.com/o/r@abc123"),
        (
            "pkg @ https://tok@example.com/pkg-1.0-py3-none-any.whl",
            "pkg @ https://example.com/pkg-1.0-py3-none-any.whl",
        ),
        ("./local/path", "./local/path"),
    ],
)
def test_pypi_req(raw, norm):
    assert normalize_pypi_req(raw) == norm


def test_bad_inputs():
    for fn, arg in [
        (normalize_pypi_req, "requests >>> 2"),
        (normalize_python, "three"),
        (parse_sys_pkg, "glibc==2.28"),
        (normalize_date, "yesterday"),
    ]:
        with pytest.raises(BadInput):
            fn(arg)
    with pytest.raises(BadInput):
        make_spec(arch="win-64", conda=["x"])


def test_order_and_duplicates():
    a = make_spec(arch="linux-64", conda=["b", "a", "a"], pypi=["Y", "x"], channels=["c1", "c2"])
    b = make_spec(arch="linux-64", conda=["a", "b"], pypi=["x", "y"], channels=["c1", "c2"])
    c = make_spec(arch="linux-64", conda=["a", "b"], pypi=["x", "y"], channels=["c2", "c1"])
    assert a.req_id == b.req_id  # spec order is not significant
    assert a.req_id != c.req_id  # channel order is


def test_credentials_never_in_identity():
    a = make_spec(
        arch="linux-64",
        conda=["x"],
        channels=["https://u:pw@repo.example/t/tok-123/main/"],
        indexes=["https://u:pw@pypi.example/simple/"],
    )
    b = make_spec(
        arch="linux-64",
        conda=["x"],
        channels=["https://repo.example/main"],
        indexes=["https://pypi.example/simple"],
    )
    assert a.req_id == b.req_id
    text = canonical_json(a.to_json())
    assert "pw" not in text and "tok-123" not in text


def test_round_trip_and_origins_not_identity():
    s = make_spec(
        arch="osx-arm64",
        conda=["tinyfoo>=1"],
        pypi=["imgb-hello"],
        python="3.11",
        sys_packages={"__osx": "12.0"},
        exclude_newer="2024-03-01",
        implicit_pypi=["boto3"],
        origins={"tinyfoo>=1": "environment.yml:4"},
    )
    assert EnvSpec.from_json(s.to_json()) == s
    assert s.python == "3.11.*" and s.exclude_newer == "2024-03-01T00:00:00Z"
    assert (
        make_spec(
            arch="osx-arm64",
            conda=["tinyfoo>=1"],
            pypi=["imgb-hello"],
            python="3.11",
            sys_packages={"__osx": "12.0"},
            exclude_newer="2024-03-01",
            implicit_pypi=["boto3"],
        ).req_id
        == s.req_id
    )


GOLDEN = [
    (dict(arch="linux-64", conda=["tinyfoo>=1"]), None),
    (
        dict(
            arch="linux-64",
            conda=["python 3.11.*", "tinyfoo"],
            pypi=["imgb-hello==1.0"],
            channels=["http://127.0.0.1:1/channel"],
            indexes=["https://pypi.org/simple"],
        ),
        None,
    ),
    (
        dict(
            arch="osx-arm64",
            pypi=["requests>=2"],
            python="3.11",
            exclude_newer="2024-03-01",
            sys_packages={"__osx": "13.0"},
        ),
        None,
    ),
]
GOLDEN_IDS = [
    "2e2bd353e80de9a344ae24740a1883cf65b83d035ee5846efdca5bfb86c2a400",
    "72365472ee2e24847b7fab53322764f59a3c5d011f8bf8a6a1f340ce4886f659",
    "50efdb2c2ea35096a919df8e4facb6a2344ff00fe47d038b0ca76661c3585866",
]


@pytest.mark.parametrize("i", range(len(GOLDEN)))
def test_golden_req_ids(i):
    kwargs, _ = GOLDEN[i]
    assert make_spec(**kwargs).req_id == GOLDEN_IDS[i]


def test_req_id_is_sha256_of_canonical_json():
    """The rule itself, written out: sha256 of sorted-keys, compact JSON of canonical()."""
    import hashlib

    literal = (
        '{"arch":"linux-64","channels":[],"conda":["tinyfoo>=1"],"exclude_newer":null,'
        '"find_links":[],"implicit":{"conda":[],"pypi":[]},"indexes":[],"lock":null,'
        '"pre":false,"pypi":[],"python":null,"python_from_base":false,"sys":{}}'
    )
    assert canonical_json(make_spec(arch="linux-64", conda=["tinyfoo>=1"]).canonical()) == literal
    assert hashlib.sha256(literal.encode()).hexdigest() == GOLDEN_IDS[0]
