"""Child process for stage.py: runs py-rattler's installer, then leaves with os._exit
(py-rattler can crash during interpreter finalization: LOCAL-SERVICES.md).

    python -m imagebuilder.stage_worker install JOB.json
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile


def _records(job: dict):
    from rattler import PackageRecord, RepoDataRecord

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, item in enumerate(job["packages"]):
            rec = item["record"]
            path = os.path.join(tmp, f"{i}.json")
            with open(path, "w") as f:
                json.dump(rec, f)
            pr = PackageRecord.from_index_json(path)
            # from_index_json reads index.json fields only: restore the archive's identity.
            if rec.get("sha256"):
                pr.sha256 = bytes.fromhex(rec["sha256"])
            if rec.get("md5"):
                pr.md5 = bytes.fromhex(rec["md5"])
            if rec.get("size"):
                pr.size = int(rec["size"])
            url = "file://" + os.path.abspath(item["path"])
            channel = rec.get("channel") or "file://" + os.path.dirname(os.path.abspath(item["path"]))
            out.append(RepoDataRecord(pr, item["file"], url, channel))
    return out


def install(job: dict) -> dict:
    import rattler
    from rattler import Platform

    records = _records(job)
    asyncio.run(
        rattler.install(
            records,
            job["target"],
            cache_dir=job["cache_dir"],
            installed_packages=[],
            platform=Platform(job["platform"]),
            execute_link_scripts=False,
            show_progress=False,
            alternative_target_prefix=job["prefix"],
        )
    )
    return {"installed": len(records)}


def main() -> int:
    kind, path = sys.argv[1], sys.argv[2]
    with open(path) as f:
        job = json.load(f)
    if kind != "install":
        print(f"unknown job {kind}", file=sys.stderr)
        return 2
    try:
        result = install(job)
    except Exception as e:  # reported to the parent as one line
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
