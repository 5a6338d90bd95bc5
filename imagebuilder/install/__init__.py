"""The one installer: conda packages and wheels from verified local files into a folder.

Used by hydrate (a prefix on this machine), pack (a prefix at a placeholder path) and the bake
engineer's staging (`/opt/imgbuild/env` inside an image). An `InstallPlan` says what to install,
where the files go (`staging`) and where the environment will live (`prefix`: the path written
into files by prefix replacement and into script shebangs); `run_install(plan)` does it.

py-rattler can crash at interpreter exit (LOCAL-SERVICES.md), so rattler runs either in a
process that leaves through `os._exit` (the CLI, the bootstrap: they call `allow_inprocess()`)
or in a short-lived subprocess (`python -m imagebuilder.install`), the default for library
callers such as pytest or the Metaflow runtime.

This package is importable without py-rattler; only `conda.py` imports it, inside functions.
"""

from __future__ import annotations

from imagebuilder.install.plan import (
    CondaItem,
    InstallPlan,
    InstallReport,
    WheelItem,
    allow_inprocess,
    run_install,
)

__all__ = [
    "CondaItem",
    "InstallPlan",
    "InstallReport",
    "WheelItem",
    "allow_inprocess",
    "run_install",
]
