"""Conda packages into a folder with py-rattler, from verified local archives only.

Records are rebuilt from the env's stored repodata records with their URL pointing at the local
file, so rattler never talks to a channel. `alternative_target_prefix` writes the final prefix
into files while linking into the staging folder; link scripts never run (they are reported).
Afterwards conda-meta is made portable: the channel URL is put back, cache paths removed,
modes made world-readable (rattler writes 0600).

Import this module only in a process that leaves through os._exit (see plan.py).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from imagebuilder.errors import BadInput, ImgbuildError, IntegrityError, Unavailable
from imagebuilder.install.plan import CondaItem, InstallPlan

# conda-meta fields that name places on the machine that installed the env.
LOCAL_FIELDS = ("extracted_package_dir", "package_tarball_full_path", "link")


def install(plan: InstallPlan) -> tuple[str, ...]:
    """Link every conda item of the plan into plan.staging; returns packages with link scripts."""
    import asyncio

    import rattler
    from rattler import Platform

    staging = Path(plan.staging)
    with tempfile.TemporaryDirectory(prefix="imgbuild-records-") as tmp:
        records = [_record(item, Path(tmp) / f"{i}.json") for i, item in enumerate(plan.conda)]
    alt = plan.prefix if os.path.abspath(plan.prefix) != os.path.abspath(plan.staging) else None
    try:
        asyncio.run(
            rattler.install(
                records,
                target_prefix=staging,
                cache_dir=Path(plan.cache_dir or ""),
                installed_packages=[],
                platform=Platform(plan.arch),
                execute_link_scripts=False,
                show_progress=False,
                alternative_target_prefix=alt,
            )
        )
    except Exception as e:  # rattler raises its own exception types; map them to ours
        raise _map_error(e, plan) from None
    normalize_meta(staging, plan)
    return _link_scripts(staging, plan)


def _record(item: CondaItem, scratch: Path):
    """A RepoDataRecord for item whose URL is the local file (rattler reads it, no network)."""
    from rattler import PrefixRecord, RepoDataRecord

    d = dict(item.record)
    url = Path(item.path).resolve().as_uri()
    d.update(url=url, fn=item.filename, files=[], paths_data={"paths_version": 1, "paths": []})
    for k in LOCAL_FIELDS + ("requested_spec", "requested_specs"):
        d.pop(k, None)
    scratch.write_text(json.dumps(d))
    try:
        parsed = PrefixRecord.from_path(scratch)
    except Exception as e:
        raise BadInput(
            f"cannot read the repodata record of {item.filename}: {e}",
            "the env record is damaged or from another imgbuild; resolve again",
        ) from None
    return RepoDataRecord(parsed, item.filename, url, d.get("channel") or "")


_OS_ERROR = re.compile(r"os error (\d+)")


def _map_error(e: Exception, plan: InstallPlan) -> ImgbuildError:
    import errno

    text = str(e)
    m = _OS_ERROR.search(text)
    code = int(m.group(1)) if m else getattr(e, "errno", None)
    where = plan.staging
    if code == errno.ENOSPC:
        return Unavailable(
            f"no space left on the device while creating {plan.prefix} (writing {where})",
            "free disk space (or choose another --prefix) and rerun",
        )
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BadInput(
            f"cannot write {where}: {os.strerror(code)}",
            "choose a --prefix you can write to",
        )
    low = text.lower()
    if "sha256" in low or ("hash" in low and "mismatch" in low):
        return IntegrityError(
            f"a package archive does not match its record: {text}",
            "the local package cache is damaged; remove ~/.imgbuild/cache and rerun",
        )
    return ImgbuildError(
        f"installing conda packages into {plan.prefix} failed: {type(e).__name__}: {text}",
        "rerun with --debug; if a package is damaged, `imgbuild verify` finds it",
        "install",
    )


def normalize_meta(staging: Path, plan: InstallPlan) -> None:
    meta = staging / "conda-meta"
    by_fn = {item.filename: item for item in plan.conda}
    for path in meta.glob("*.json") if plan.portable_meta else ():
        d = json.loads(path.read_text())
        item = by_fn.get(d.get("fn", ""))
        for k in LOCAL_FIELDS:
            d.pop(k, None)
        if item is not None:
            # The channel's URL, not our cache path: what `conda list --explicit` shows.
            d["url"] = item.record.get("url") or d.get("url")
            d["channel"] = item.record.get("channel") or d.get("channel")
        tmp = path.with_name(path.name + ".tmp")
        # compact: json.dumps with indent runs the pure-Python encoder (10x slower on the
        # thousands of paths entries of a python package)
        tmp.write_text(json.dumps(d, sort_keys=True, separators=(",", ":")) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    if meta.is_dir():
        for p in meta.iterdir():
            os.chmod(p, 0o644)


def _link_scripts(staging: Path, plan: InstallPlan) -> tuple[str, ...]:
    """Packages that ship post-link / pre-unlink scripts (conda's bin/.<name>-post-link.sh)."""
    found = []
    for item in plan.conda:
        name = item.record.get("name", "")
        for kind in ("pre-link", "post-link", "pre-unlink"):
            if (staging / "bin" / f".{name}-{kind}.sh").exists():
                found.append(name)
                break
    return tuple(sorted(set(found)))
