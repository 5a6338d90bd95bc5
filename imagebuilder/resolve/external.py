"""micromamba / conda / mamba as conda solvers (`--resolver NAME`), only when on PATH.

The tool solves (`create --dry-run --json` for the target subdir, virtual packages given by
CONDA_OVERRIDE_*); the records it picked are then read from the same channels through our
rattler gateway, so Packages carry the same fields (sha256, record) as with the embedded
solver. None of these tools is installable on the machines this project is developed on, so
only the "absent" path is tested here (tests/resolve/test_external.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from imagebuilder.env import Package
from imagebuilder.errors import Conflict, NotFound, UsageError
from imagebuilder.resolve.base import Context
from imagebuilder.spec import EnvSpec

TOOLS = ("micromamba", "conda", "mamba")


class ExternalResolver:
    def __init__(self, name: str) -> None:
        if name not in TOOLS:
            raise UsageError(
                f"unknown resolver {name!r}",
                "use rattler (default), uv, micromamba, conda or mamba",
            )
        self.name = name
        self.path = shutil.which(name)
        if self.path is None:
            raise UsageError(
                f"--resolver {name}: `{name}` is not on PATH",
                f"install {name}, or use the embedded solver (--resolver rattler, the default)",
            )

    def version(self) -> str:
        out = subprocess.run([self.path, "--version"], capture_output=True, text=True)
        return (out.stdout.strip().split() or ["unknown"])[-1]

    def solve(self, spec: EnvSpec, specs: list[str], ctx: Context) -> list[Package]:
        from imagebuilder.platforms import virtual_packages
        from imagebuilder.resolve.auth import conda_channel_url

        ctx.say(f"solving conda packages for {spec.arch} with {self.name}")
        env = dict(os.environ, CONDA_SUBDIR=spec.arch)
        for vname, version in virtual_packages(spec.arch, spec.sys).items():
            env[f"CONDA_OVERRIDE_{vname.lstrip('_').upper()}"] = version
        cmd = [self.path, "create", "--dry-run", "--json", "--yes", "-n", "imgbuild-dry-run"]
        cmd += ["--override-channels", "--strict-channel-priority"]
        for c in spec.channels:
            cmd += ["-c", conda_channel_url(c, ctx.secrets)]
        if self.name == "micromamba":
            cmd += ["--platform", spec.arch]
        proc = subprocess.run([*cmd, *specs], capture_output=True, text=True, env=env)
        try:
            result = json.loads(proc.stdout or "{}")
        except ValueError:
            result = {}
        if proc.returncode != 0 or not result.get("success", True):
            from imagebuilder.urls import redact

            text = redact(result.get("message") or result.get("error") or proc.stderr or "")
            kind = (
                NotFound if "nothing provides" in text or "not found" in text.lower() else Conflict
            )
            raise kind(f"{self.name} cannot solve for {spec.arch}: {text.strip()[:400]}")
        links = result.get("actions", {}).get("LINK", [])
        return _records(spec, links, ctx)


def _records(spec: EnvSpec, links: list[dict], ctx: Context) -> list[Package]:
    """Fetch full records for the files the tool picked (same channels, via our gateway)."""
    import asyncio

    from imagebuilder.resolve.auth import conda_channel_url
    from imagebuilder.resolve.conda import to_package

    async def query():
        from rattler import Channel

        from imagebuilder.resolve.gateway import load_no_shards, make_gateway

        urls = [conda_channel_url(c, ctx.secrets) for c in spec.channels]
        gw = make_gateway(ctx.cache_dir, urls, load_no_shards(ctx.cache_dir))
        names = sorted({link["name"] for link in links})
        result = await gw.query([Channel(u) for u in urls], [spec.arch, "noarch"], names, False)
        return {r.file_name: r for sub in result for r in sub}

    by_file = asyncio.run(query())
    out = []
    for link in links:
        fn = link.get("fn") or link["url"].rsplit("/", 1)[-1]
        if fn not in by_file:
            raise NotFound(f"{fn} (picked by the external solver) is not in the channels' index")
        out.append(to_package(by_file[fn], spec, ctx))
    return out
