"""ResolvedEnv: full_id rule, golden value, and records that refuse to lie."""

import hashlib
import json

import pytest

from imagebuilder.env import Package, ResolvedEnv, compute_full_id
from imagebuilder.errors import BadInput, IntegrityError
from imagebuilder.schema import validate
from imagebuilder.spec import make_spec


def pkg(name, version="1.0", kind="conda", sha="a", **kw):
    return Package(
        kind=kind,
        subdir=kw.pop("subdir", "noarch"),
        name=name,
        version=version,
        build=kw.pop("build", "py_0"),
        sha256=sha * 64,
        filename=kw.pop("filename", f"{name}-{version}-py_0.conda"),
        url=kw.pop("url", f"http://127.0.0.1:1/noarch/{name}-{version}-py_0.conda"),
        **kw,
    )


def test_full_id_rule_written_out():
    packages = [
        pkg("tinyfoo", sha="b"),
        pkg(
            "imgb-hello",
            kind="pypi",
            sha="c",
            build="py3-none-any",
            filename="imgb_hello-1.0-py3-none-any.whl",
        ),
    ]
    rows = sorted([p.identity for p in packages])
    expected = hashlib.sha256(
        json.dumps(rows, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert compute_full_id(packages) == expected


def test_full_id_ignores_order_url_and_record():
    a = [pkg("x"), pkg("y", sha="b")]
    b = [pkg("y", sha="b", url="http://mirror/y.conda"), pkg("x", record={"anything": 1})]
    assert compute_full_id(a) == compute_full_id(b)
    assert compute_full_id(a) != compute_full_id([pkg("x"), pkg("y", sha="c")])


def test_round_trip_validates_and_detects_tampering():
    env = ResolvedEnv(
        make_spec(arch="linux-64", conda=["x"]),
        (pkg("x"),),
        (("rattler", "0.28.0"),),
        "2026-01-01T00:00:00Z",
    )
    record = env.to_json()
    validate(record, "env.v1")
    assert ResolvedEnv.from_json(json.loads(json.dumps(record))) == env

    tampered = json.loads(json.dumps(record))
    tampered["packages"][0]["sha256"] = "f" * 64
    with pytest.raises(IntegrityError):
        ResolvedEnv.from_json(tampered)

    bad = json.loads(json.dumps(record))
    bad["packages"][0]["filename"] = "../escape.conda"
    with pytest.raises(BadInput):
        validate(bad, "env.v1")

    future = dict(record, schema="imgbuild/env/v2")
    with pytest.raises(BadInput, match="v2"):
        ResolvedEnv.from_json(future)
