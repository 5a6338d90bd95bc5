"""The machine a lock is imported for: wheel tags and marker values of (arch, python).

Locks written for many platforms (uv.lock, pylock.toml, `pip-compile --generate-hashes`) list
several files per package; importing for one arch picks the best wheel the target accepts,
exactly as an installer on that machine would, and drops packages whose marker is false there.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from imagebuilder.errors import BadInput
from imagebuilder.platforms import get_arch


@dataclass(frozen=True)
class Target:
    arch: str
    python: str  # full version, e.g. "3.11.7" ("3.11" is read as "3.11.0")
    sys_items: tuple[tuple[str, str], ...] = ()

    @property
    def sys(self) -> dict[str, str]:
        return dict(self.sys_items)

    @classmethod
    def make(cls, arch: str, python: str | None, sys_packages: dict[str, str] | None = None):
        get_arch(arch)
        version = (python or "").strip().lstrip("=").rstrip(".*")
        if not version:
            version = ".".join(map(str, sys.version_info[:3]))
        parts = version.split(".")
        if not all(p.isdigit() for p in parts) or len(parts) < 2:
            raise BadInput(
                f"python {python!r} is not a version like 3.11 or 3.11.7",
                "pass --python X.Y to say which python the locked wheels are for",
            )
        return cls(arch, ".".join(parts[:3]), tuple(sorted((sys_packages or {}).items())))

    def wheel_rank(self, filename: str) -> int | None:
        """Lower is better; None when the target cannot install the wheel. The resolver's own
        ranking (resolve/wheeltags.py), so a lock picks the wheel a resolve would have."""
        from imagebuilder.resolve.wheeltags import rank

        return rank(filename, self.arch, self.python, self.sys)

    def best_wheel(self, filenames: list[str]) -> str | None:
        ranked = [(r, f) for f in filenames if (r := self.wheel_rank(f)) is not None]
        return min(ranked)[1] if ranked else None

    @property
    def marker_env(self) -> dict[str, str]:
        a = get_arch(self.arch)
        linux = a.is_linux
        return {
            "implementation_name": "cpython",
            "implementation_version": self.python,
            "os_name": "posix",
            "platform_machine": a.machine,
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux" if linux else "Darwin",
            "platform_version": "",
            "python_full_version": self.python,
            "python_version": ".".join(self.python.split(".")[:2]),
            "sys_platform": "linux" if linux else "darwin",
        }

    def marker_true(self, marker: str | None, groups: frozenset[str] = frozenset()) -> bool:
        """Evaluate a PEP 508 marker (PEP 751 lock-file context: extras, dependency_groups)."""
        if not marker:
            return True
        from packaging.markers import InvalidMarker, Marker

        try:
            m = Marker(marker)
        except InvalidMarker as e:
            raise BadInput(f"bad environment marker {marker!r}: {e}") from None
        env: dict = {**self.marker_env, "extras": frozenset(), "dependency_groups": groups}
        try:
            return m.evaluate(env, context="lock_file")
        except TypeError:  # older packaging without the lock-file context
            return m.evaluate({k: v for k, v in env.items() if isinstance(v, str)})
