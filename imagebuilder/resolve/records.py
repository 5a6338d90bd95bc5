"""Rebuild rattler RepoDataRecords from the `record` a conda Package keeps, with no channel.

The record is `json.loads(RepoDataRecord.to_json())` taken at resolve time (credentials
stripped). Install (hydrate, bake) hands these to `rattler.install` without touching the
channel: records are grouped into a repodata.json per (channel, subdir) in a temp folder and
read back with `RepoData.from_path(...).into_repo_data(channel)`, which keeps every field.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from imagebuilder.env import Package


def rattler_records(packages: list[Package]) -> list:
    """RepoDataRecords for the conda packages, in the given order."""
    from rattler import Channel, RepoData

    groups: dict[tuple[str, str], list[Package]] = {}
    for p in packages:
        if p.kind != "conda" or p.record is None:
            continue
        channel = p.record.get("channel") or p.channel or ""
        groups.setdefault((channel, p.subdir), []).append(p)
    by_file: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="imgbuild-records-") as tmp:
        for i, ((channel, subdir), members) in enumerate(sorted(groups.items())):
            repodata: dict = {"info": {"subdir": subdir}, "packages": {}, "packages.conda": {}}
            for p in members:
                rec = {k: v for k, v in p.record.items() if k not in ("fn", "url", "channel")}
                key = "packages.conda" if p.filename.endswith(".conda") else "packages"
                repodata[key][p.filename] = rec
            path = Path(tmp) / f"{i}-{subdir}.json"
            path.write_text(json.dumps(repodata))
            for r in RepoData.from_path(path).into_repo_data(Channel(channel.rstrip("/"))):
                by_file[f"{channel}|{subdir}|{r.file_name}"] = r
    out = []
    for p in packages:
        if p.kind == "conda" and p.record is not None:
            channel = p.record.get("channel") or p.channel or ""
            out.append(by_file[f"{channel}|{p.subdir}|{p.filename}"])
    return out
