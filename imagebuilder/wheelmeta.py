"""The METADATA of a wheel the store holds (license for the SBOM, Requires-Dist for `why`).

Read from the local store only: an S3 store would mean downloading whole wheels for a header.
"""

from __future__ import annotations

import zipfile
from email.message import Message

from imagebuilder.env import Package


def wheel_metadata(store, p: Package) -> Message | None:
    if store is None or p.is_source or not p.filename.endswith(".whl"):
        return None
    local = getattr(store, "local_path", None)
    path = local(p.store_key) if local else None
    if path is None:
        return None
    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith(".dist-info/METADATA")), None)
            if name is None:
                return None
            text = z.read(name).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile):
        return None
    from email.parser import HeaderParser

    return HeaderParser().parsestr(text.split("\n\n", 1)[0])


def requires_dist(store, p: Package, marker_env: dict[str, str]) -> list[str]:
    """Requirements of the wheel that apply on the target (extras-only ones left out)."""
    from packaging.requirements import InvalidRequirement, Requirement

    meta = wheel_metadata(store, p)
    if meta is None:
        return []
    out = []
    for line in meta.get_all("Requires-Dist") or ():
        try:
            r = Requirement(line)
        except InvalidRequirement:
            continue
        if r.marker is not None:
            try:
                if not r.marker.evaluate({**marker_env, "extra": ""}):
                    continue
            except Exception:  # an unevaluable marker: keep the edge, it is for messages only
                pass
        out.append(str(r))
    return out
