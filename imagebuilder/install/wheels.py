"""Wheels into a folder: unpacked once by the `installer` library (pure Python, nothing of the
target runs, so it also stages images for other platforms), then hardlinked (wheelcache.py).

Files go under plan.staging; script shebangs name plan.python (default <prefix>/bin/python),
the interpreter at the env's final place. Measured against `uv pip install --offline --no-deps`
(docs/hydrate.md): as fast or faster in-process (no second process, no interpreter query), and
the only one of the two that writes shebangs for a prefix other than the one it installs into.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from imagebuilder.errors import BadInput, Conflict, IntegrityError, Unavailable
from imagebuilder.install.plan import InstallPlan


def site_packages_of(plan: InstallPlan) -> str | None:
    """site-packages relative to the prefix: given, else from the conda python record."""
    if plan.site_packages:
        return plan.site_packages
    py = next((c.record for c in plan.conda if c.record.get("name") == "python"), None)
    if py is None:
        return None
    if py.get("python_site_packages_path"):
        return py["python_site_packages_path"]
    major_minor = ".".join(str(py["version"]).split(".")[:2])
    return f"lib/python{major_minor}/site-packages"


def install(plan: InstallPlan, site: str | None) -> None:
    from installer.exceptions import InstallerError

    from imagebuilder.install import wheelcache
    from imagebuilder.store.localcache import cache_root

    if site is None:
        raise BadInput(
            "the environment has wheels but no python to install them for",
            "add python to the conda specs, or create it with --python PATH",
        )
    root = Path(plan.staging)
    python = plan.python or os.path.join(plan.prefix, "bin", "python")
    for item in plan.wheels:
        try:
            tree, scripts = wheelcache.unpacked(Path(item.path), item.sha256, site, cache_root())
            wheelcache.link_into(tree, scripts, root, python)
        except FileExistsError as e:
            raise Conflict(
                f"wheel {Path(item.path).name} would overwrite {_rel(e.filename, root)}, "
                "which another package of the env installed",
                "the env holds the same files twice (a conda and a PyPI package?); resolve again",
            ) from None
        except OSError as e:
            raise _os_error(e, plan, item.path) from None
        except (InstallerError, ValueError, KeyError) as e:
            raise IntegrityError(
                f"cannot install wheel {Path(item.path).name}: {e}",
                "the wheel is damaged or not a valid wheel; `imgbuild verify` checks the store",
            ) from None


def _rel(path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except (ValueError, TypeError):
        return str(path)


def _os_error(e: OSError, plan: InstallPlan, wheel: str):
    if e.errno == errno.ENOSPC:
        return Unavailable(
            f"no space left on the device while creating {plan.prefix} (writing {plan.staging})",
            "free disk space (or choose another --prefix) and rerun",
        )
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return BadInput(
            f"cannot write {plan.staging}: {e.strerror}", "choose a --prefix you can write to"
        )
    return BadInput(f"installing {Path(wheel).name} failed: {e}")
