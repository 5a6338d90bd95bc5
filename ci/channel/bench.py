"""Big packages for benchmarks (``build.py --bench``; never used by CI).

Real linux x86_64 cp311 wheels of numpy, scipy, pandas, scikit-learn, matplotlib and their
dependencies, converted to linux-64 conda packages (``lib/python3.11/site-packages``), about
400 MB installed with python. ``tqdm`` comes in two versions (4.66.1 and 4.66.2): nothing
depends on it, so swapping it is the "one package changed" case.
"""

from __future__ import annotations

import re
from pathlib import Path

import builder as b
import recipes

PY = ["python >=3.11,<3.12.0a0", "python_abi 3.11.* *_cp311"]
# (conda name, PyPI project, version, depends besides python, date)
BENCH = [
    ("numpy", "numpy", "1.26.4", [], "2024-02-05"),
    ("scipy", "scipy", "1.11.4", ["numpy >=1.21.6,<1.28.0"], "2023-11-18"),
    ("python-dateutil", "python-dateutil", "2.8.2", ["six >=1.5"], "2021-07-14"),
    ("pytz", "pytz", "2023.3.post1", [], "2023-09-03"),
    ("python-tzdata", "tzdata", "2023.4", [], "2023-12-22"),
    (
        "pandas",
        "pandas",
        "2.1.4",
        ["numpy >=1.23.2,<2", "python-dateutil >=2.8.2", "pytz >=2020.1", "python-tzdata >=2022.1"],
        "2023-12-08",
    ),
    ("joblib", "joblib", "1.3.2", [], "2023-08-09"),
    ("threadpoolctl", "threadpoolctl", "3.2.0", [], "2023-07-13"),
    (
        "scikit-learn",
        "scikit-learn",
        "1.3.2",
        ["numpy >=1.17.3,<2", "scipy >=1.5.0", "joblib >=1.1.1", "threadpoolctl >=2.0.0"],
        "2023-10-23",
    ),
    ("contourpy", "contourpy", "1.2.0", ["numpy >=1.20,<2.0"], "2023-11-03"),
    ("cycler", "cycler", "0.12.1", [], "2023-10-07"),
    ("fonttools", "fonttools", "4.47.0", [], "2023-12-19"),
    ("kiwisolver", "kiwisolver", "1.4.5", [], "2023-08-24"),
    ("pillow", "pillow", "10.2.0", [], "2024-01-02"),
    ("pyparsing", "pyparsing", "3.1.1", [], "2023-07-30"),
    (
        "matplotlib",
        "matplotlib",
        "3.8.2",
        [
            "contourpy >=1.0.1",
            "cycler >=0.10",
            "fonttools >=4.22.0",
            "kiwisolver >=1.3.1",
            "numpy >=1.21,<2",
            "packaging >=20.0",
            "pillow >=8",
            "pyparsing >=2.3.1",
            "python-dateutil >=2.7",
        ],
        "2023-11-17",
    ),
    ("tqdm", "tqdm", "4.66.1", [], "2023-08-08"),
    ("tqdm", "tqdm", "4.66.2", [], "2024-02-10"),
]


def pick_wheel(fetch, project: str, version: str) -> str:
    """The filename of ``project==version``'s cp311 manylinux x86_64 wheel, else its pure wheel."""
    names = list(fetch.project_files(project))
    stem = re.escape(fetch.normalize(project).replace("-", "_"))
    v = re.escape(version)
    for pattern in (
        rf"^{stem}-{v}-cp311-cp311-manylinux_2_17_x86_64\.manylinux2014_x86_64\.whl$",
        rf"^{stem}-{v}-cp311-cp311-manylinux.*x86_64.*\.whl$",
        rf"^{stem}-{v}-py3-none-any\.whl$",
        rf"^{stem}-{v}-py2\.py3-none-any\.whl$",
    ):
        hits = sorted(n for n in names if re.match(pattern, n, re.IGNORECASE))
        if hits:
            return hits[0]
    raise RuntimeError(f"no linux x86_64 cp311 or pure wheel for {project}=={version}")


def build_bench(channel: Path, log) -> None:
    fetch = recipes._load_fetch()
    items = [(proj, pick_wheel(fetch, proj, ver)) for _, proj, ver, _, _ in BENCH]
    got = fetch.fetch_many(items, workers=6)
    for (name, _proj, ver, deps, date), (path, _meta) in zip(BENCH, got, strict=True):
        res = b.wheel_to_conda(
            channel,
            path,
            "linux-64",
            name=name,
            version=ver,
            build="py311_imgb_0",
            depends=[*PY, *deps],
            fmt=".conda",
            timestamp=date,
            zstd_level=3,
        )
        log(f"bench: {res.filename} ({res.path.stat().st_size / 1e6:.1f} MB)")
