"""Golden ids of the resolve phase: fixed inputs -> fixed req_ids; frozen rig packages -> fixed
full_ids. These hex values are the contract (CONTRACT.md: Identity). If one changes, every
stored environment changes identity: change docs/resolve.md, CONTRACT.md and this file
together, and say why.

full_ids are pinned only where every package is byte-identical on every machine: the real
PyPI wheels of the rig index (requests 2.31.0 and its dependencies, six, attrs), resolved as
a venv on the base image's python. The rig's conda python is made from the build machine's
interpreter, so conda-side full_ids are machine-specific and not pinned here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imagebuilder.ids import canonical_json
from imagebuilder.inputs.collect import Flags, collect

INPUTS = Path(__file__).parent / "inputs"

GOLDEN_REQ_IDS = {
    # (case, arch): req_id
    ("requirements.txt", "linux-64"): "52b4dc65322a1edfb0df1763b21176b73a049a14e7ddac88814b550146372e9e",
    ("environment.yml", "linux-64"): "a20032d61ad73f206b548fee394b1dae299b5115bd6a4f5e0c37063a9ec3fd63",
    ("pyproject.toml", "osx-arm64"): "c13bb27f95b0f2dd6e5aff47ce76e61b706a46bb17a5591c03dadc5123aec154",
    ("flags", "linux-64"): "4b9d977bd0437406d041cbf7f3a6e7c0b39346d609cef57af2d704b565d93db9",
    ("imgbuild.toml", "linux-64"): "580454d72cc65119da489aebf2ebab283a76257b05f047125180642b802646a3",
    ("imgbuild.toml", "osx-arm64"): "4ad1fdc88aab03a79cda9e1cc0cb9648a3c0b5a925734cd5740f1736e24a4491",
}  # fmt: skip


def _specs(case: str, arch: str):
    if case == "requirements.txt":
        flags = Flags(requirements=(str(INPUTS / case),), arch=(arch,))
    elif case == "environment.yml":
        flags = Flags(environment=(str(INPUTS / case),), arch=(arch,))
    elif case == "pyproject.toml":
        flags = Flags(pyproject=(str(INPUTS / case),), arch=(arch,))
    elif case == "flags":
        flags = Flags(conda=("tinyfoo>=1",), channels=("http://127.0.0.1:1/channel",), arch=(arch,))
    else:  # bare `imgbuild resolve` in INPUTS: discovery finds imgbuild.toml [environment]
        flags = Flags()
    return [s for s in collect(flags, None, cwd=INPUTS).specs if s.arch == arch]


@pytest.mark.parametrize("case,arch", sorted(GOLDEN_REQ_IDS))
def test_golden_req_ids(case, arch):
    (spec,) = _specs(case, arch)
    assert spec.req_id == GOLDEN_REQ_IDS[(case, arch)], canonical_json(spec.canonical())


def test_golden_canonical_form_of_requirements_txt():
    """What is hashed, written out: defaults filled in, names normalized, python implicit."""
    (spec,) = _specs("requirements.txt", "linux-64")
    assert canonical_json(spec.canonical()) == (
        '{"arch":"linux-64","channels":["conda-forge"],"conda":["ffmpeg>=6"],'
        '"exclude_newer":null,"find_links":[],"implicit":{"conda":["python"],"pypi":[]},'
        '"indexes":["https://pypi.org/simple","https://pypi.example.org/simple"],"lock":null,'
        '"pre":false,"pypi":["requests<3,>=2.31","six; python_version < \\"3.12\\""],'
        '"python":"3.11.*","python_from_base":false,"sys":{"__glibc":"2.31"}}'
    )


GOLDEN_FULL_IDS = {
    "linux-64": "98d87b541d4ee0f636eadced9e9d5d36d5c3d6a0084b4b2bf4eff8b0185e2e53",
    "linux-aarch64": "1d3e92ab1e7c6844bdd9bff1e3ee5857d3ade0930cc58bac8adff8dc35ff7db7",
    "osx-arm64": "1dedf1193318d72ccf36df430a14741da3e66209eb049845a68feba5f821ae0d",
}


@pytest.mark.rig
@pytest.mark.parametrize("arch", sorted(GOLDEN_FULL_IDS))
def test_golden_full_ids_on_frozen_wheels(cli, rig_services, arch):
    doc = cli("resolve", "--pypi", "requests==2.31.0", "--pypi", "six==1.16.0", "--pypi",
              "attrs==23.1.0", "--python-from-base", "--python", "3.11", "--index-url",
              rig_services.index_url, "--arch", arch, "--dry-run", "--json").json()  # fmt: skip
    assert doc["full_id"] == GOLDEN_FULL_IDS[arch], [
        (p["name"], p["version"], p["build"], p["sha256"]) for p in doc["packages"]
    ]
