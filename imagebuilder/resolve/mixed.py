"""Mixed envs: the conda part is solved first; its Python packages are then *installed* as far
as the PyPI resolver is concerned, so nothing is installed twice.

How: every conda package that is a Python distribution becomes (1) a constraint
`name==version` (the brief's pin) and (2) a tiny stub wheel with that name and version and no
dependencies, required by direct URL. The stub makes uv treat the package as present without
asking the index for it (the index may lack that exact version, and the PyPI metadata of a
conda-provided package must not drag in PyPI dependencies conda already satisfied); a PyPI
package needing another version conflicts with it, and the conflict names both sides. Stubs
are left out of the result (`--no-emit-package`).
"""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

from imagebuilder.env import Package
from imagebuilder.resolve.base import Provided

# conda name -> PyPI name where they differ (the common cases; others map to themselves).
CONDA_TO_PYPI = {
    "pytorch": "torch",
    "pytorch-cpu": "torch",
    "pytorch-gpu": "torch",
    "py-opencv": "opencv-python",
    "matplotlib-base": "matplotlib",
    "tensorflow-base": "tensorflow",
    "msgpack-python": "msgpack",
    "py-xgboost": "xgboost",
}
NOT_PYTHON_DISTS = {"python", "python_abi", "python-abi", "libpython-static"}


def is_python_dist(p: Package) -> bool:
    if p.name in NOT_PYTHON_DISTS or p.name.startswith("_"):
        return False
    if (p.record or {}).get("noarch") == "python":
        return True
    return any(d.split()[0] == "python" for d in p.depends)


# PEP 440's canonical versions (its appendix); anything else is asked of packaging.
_CANONICAL_VERSION = re.compile(
    r"^([1-9][0-9]*!)?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*((a|b|rc)(0|[1-9][0-9]*))?"
    r"(\.post(0|[1-9][0-9]*))?(\.dev(0|[1-9][0-9]*))?$"
)


def _is_pep440(version: str) -> bool:
    if _CANONICAL_VERSION.match(version):
        return True
    from packaging.version import InvalidVersion, Version

    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


def provided(conda_packages: list[Package]) -> list[Provided]:
    """Python distributions the conda part installs, under their PyPI names."""
    from imagebuilder.resolve.wheeltags import canonicalize_name

    out = []
    for p in conda_packages:
        # A version uv cannot read (not PEP 440) cannot be held: such a package is left out.
        if is_python_dist(p) and _is_pep440(p.version):
            name = canonicalize_name(CONDA_TO_PYPI.get(p.name, p.name))
            out.append(Provided(name, p.version, p.name))
    return sorted(out, key=lambda x: x.name)


def write_stub(folder: Path, dist: Provided) -> Path:
    """A minimal valid wheel: METADATA (name, version, no requirements), WHEEL, RECORD."""
    stem = f"{dist.name.replace('-', '_')}-{dist.version}"
    path = Path(folder) / f"{stem}-py3-none-any.whl"
    info = f"{stem}.dist-info"
    files = {
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist.name}\nVersion: {dist.version}\n"
        f"Summary: provided by the conda package {dist.conda_name}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: imgbuild\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{name},sha256={digest.decode()},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), text)
    return path
