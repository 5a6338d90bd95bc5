"""The conda side: rattler.solve for the target arch, records turned into Packages.

Cross-arch from any host: the virtual packages come from `platforms.virtual_packages` (the
target's defaults plus --sys-pkg), never from the machine we run on.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from imagebuilder.env import CONDA, Package
from imagebuilder.errors import BadInput
from imagebuilder.resolve.base import Context
from imagebuilder.spec import EnvSpec
from imagebuilder.urls import strip_credentials


def conda_specs(spec: EnvSpec) -> list[str]:
    """What the conda solver is asked for: the request, implicit packages, the python pin."""
    out = list(spec.all_conda)
    if spec.python and not spec.python_from_base:
        out.append(f"python {spec.python}")
    return out


class RattlerResolver:
    name = "rattler"

    def version(self) -> str:
        import rattler

        return rattler.__version__

    def solve(self, spec: EnvSpec, specs: list[str], ctx: Context) -> list[Package]:
        import asyncio

        from imagebuilder.resolve.auth import conda_channel_url

        match_specs = [_match_spec(s, spec) for s in specs]
        urls = [conda_channel_url(c, ctx.secrets) for c in spec.channels]
        ctx.say(f"solving conda packages for {spec.arch}")
        records = asyncio.run(self._solve(spec, urls, match_specs, ctx))
        return [to_package(r, spec, ctx) for r in records]

    async def _solve(self, spec: EnvSpec, urls: list[str], match_specs, ctx: Context):
        from rattler.exceptions import GatewayError, SolverError

        from imagebuilder.resolve import gateway

        try:
            records, _ = await gateway.solve(
                ctx.cache_dir,
                urls,
                match_specs,
                platforms=[spec.arch, "noarch"],
                virtual_packages=virtual_packages(spec),
                exclude_newer=_exclude_newer(spec),
            )
            return records
        except SolverError as e:
            from imagebuilder.resolve import explain

            available = await _availability(ctx, urls, spec, str(e))
            # --debug prints the cause: the solver's whole tree, credentials masked.
            raise explain.conda_failure(str(e), spec, available) from _debug_cause(e)
        except GatewayError as e:
            from imagebuilder.resolve import explain

            raise explain.channel_failure(str(e), spec) from _debug_cause(e)


def _debug_cause(e: Exception) -> Exception:
    from imagebuilder.urls import redact

    return RuntimeError(redact(str(e)))


def _match_spec(text: str, spec: EnvSpec):
    from rattler import MatchSpec

    try:
        return MatchSpec(text)
    except Exception as e:  # rattler raises several parse error types
        where = spec.origin(text)
        raise BadInput(
            f"bad conda spec {text!r}{f' ({where})' if where else ''}: {str(e).splitlines()[0]}",
            "use NAME[ VERSION[ BUILD]], e.g. 'numpy>=2' or 'numpy 1.26.*'",
        ) from None


def virtual_packages(spec: EnvSpec) -> list:
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version

    from imagebuilder.platforms import get_arch, virtual_packages

    machine = get_arch(spec.arch).machine
    return [
        GenericVirtualPackage(
            PackageName(name),
            Version(version),
            BuildString(machine if name == "__archspec" else "0"),
        )
        for name, version in sorted(virtual_packages(spec.arch, spec.sys).items())
    ]


def _exclude_newer(spec: EnvSpec) -> datetime | None:
    if not spec.exclude_newer:
        return None
    return datetime.strptime(spec.exclude_newer, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)


async def _availability(ctx: Context, urls: list[str], spec: EnvSpec, message: str) -> dict:
    """For 'no candidates' failures: name -> versions the channels have (any timestamp)."""
    from imagebuilder.resolve.explain import missing_names

    names = missing_names(message)
    if not names:
        return {}
    from rattler import Channel

    from imagebuilder.resolve.gateway import load_no_shards, make_gateway

    gw = make_gateway(ctx.cache_dir, urls, load_no_shards(ctx.cache_dir))
    out: dict[str, list[str]] = {}
    try:
        result = await gw.query(
            [Channel(u) for u in urls],
            [spec.arch, "noarch"],
            [n for n in names if not n.startswith("__")],
            recursive=False,
        )
        for subdir_records in result:
            for r in subdir_records:
                out.setdefault(r.name.normalized, []).append(str(r.version))
    except Exception:  # best effort: the message is still clear without the versions
        return {}
    return {n: sorted(set(v), key=_version_key) for n, v in out.items()}


def _version_key(v: str):
    from rattler import Version

    return Version(v)


def to_package(record, spec: EnvSpec, ctx: Context) -> Package:
    """A rattler RepoDataRecord as a Package; URLs without credentials; the record kept so
    install can rebuild it offline (imagebuilder/resolve/records.py)."""
    rec = json.loads(record.to_json())
    for key in ("url", "channel"):
        if rec.get(key):
            rec[key] = strip_credentials(rec[key])
    sha256 = record.sha256.hex() if record.sha256 else ""
    md5 = record.md5.hex() if record.md5 else None
    if not sha256:
        # Old channels publish md5 only; full_id needs sha256, so hash the archive once here.
        from imagebuilder.resolve.fetch import sha256_of_url

        ctx.say(f"hashing {record.file_name} (the channel gives no sha256)")
        sha256 = sha256_of_url(record.url, md5=md5)
        rec["sha256"] = sha256
    return Package(
        kind=CONDA,
        subdir=str(record.subdir),
        name=record.name.normalized,
        version=str(record.version),
        build=str(record.build),
        sha256=sha256,
        filename=record.file_name,
        url=strip_credentials(record.url),
        size=record.size,
        md5=md5,
        depends=tuple(str(d) for d in record.depends),
        channel=strip_credentials(record.channel) if record.channel else None,
        record=rec,
    )
