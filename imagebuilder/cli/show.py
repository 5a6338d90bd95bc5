"""`imgbuild show ENV` and `imgbuild ls`: what the store holds, short and aligned."""

from __future__ import annotations

import click

from imagebuilder.cli.output import common_options


def _store(ui):
    from imagebuilder.store import open_store

    config = ui.config()
    return open_store(config.store, config)


def _alias_map(store) -> dict[tuple[str, str], list[str]]:
    """(req_id, full_id) -> ["name:tag", ...] of the aliases pointing at it."""
    from imagebuilder.store.aliases import list_aliases

    out: dict[tuple[str, str], list[str]] = {}
    for ref, rec in list_aliases(store):
        for target in rec.platforms.values():
            out.setdefault((target.req_id, target.full_id), []).append(str(ref))
    return out


@click.command("show")
@click.argument("env")
@click.option("--arch", default=None, metavar="SUBDIR", help="For a multi-arch alias: which env.")
@common_options
def show(ui, env: str, arch: str | None) -> None:
    """Show one environment: ids, request, packages.

    \b
    ENV: full_id (16/64 hex), REQ:FULL, metaflow_<req>_<full>, mf:Flow/Run/Step, NAME[:TAG].
    """
    from imagebuilder.catalog import find_env
    from imagebuilder.cli.output import emit

    store = _store(ui)
    found = find_env(store, env, arch)
    aliases = sorted(_alias_map(store).get((found.req_id, found.full_id), []))
    data = {**found.to_json(), "aliases": aliases}
    emit(ui, data, lambda _: _human_env(found, aliases))


def _human_env(env, aliases: list[str]) -> str:
    spec = env.spec
    request = [f"conda: {' '.join(spec.all_conda)}" if spec.all_conda else ""]
    request.append(f"pypi: {' '.join(spec.all_pypi)}" if spec.all_pypi else "")
    resolver = ", ".join(f"{k} {v}" for k, v in env.resolver)
    head = [
        ("env", env.name),
        ("req_id", env.req_id),
        ("full_id", env.full_id),
        ("arch", env.arch),
        ("resolved", f"{env.resolved_at}" + (f" ({resolver})" if resolver else "")),
        ("request", "; ".join(r for r in request if r)),
        ("python", spec.python or ""),
        ("channels", " ".join(spec.channels)),
        ("indexes", " ".join(spec.indexes)),
        ("sys", " ".join(f"{k}=={v}" for k, v in spec.sys_packages)),
        ("exclude", spec.exclude_newer or ""),
        ("aliases", " ".join(aliases)),
    ]
    lines = [f"{k:<9} {v}" for k, v in head if v]
    rows = [
        (p.kind, p.name, p.version, p.build or p.source or "", p.subdir, _size(p.size))
        for p in env.packages
    ]
    lines.append("")
    lines += _table(("KIND", "NAME", "VERSION", "BUILD", "SUBDIR", "SIZE"), rows)
    return "\n".join(lines)


@click.command("ls")
@common_options
def ls(ui) -> None:
    """List the environments and aliases in the store."""
    from imagebuilder.cli.output import emit
    from imagebuilder.ids import short
    from imagebuilder.store.aliases import list_aliases
    from imagebuilder.store.envs import env_keys, read_env

    store = _store(ui)
    aliases = _alias_map(store)
    envs = sorted((read_env(store, k) for k in env_keys(store)), key=lambda e: e.resolved_at)
    env_rows = [
        {
            "req_id": e.req_id,
            "full_id": e.full_id,
            "env_name": e.name,
            "arch": e.arch,
            "resolved_at": e.resolved_at,
            "packages": len(e.packages),
            "aliases": sorted(aliases.get((e.req_id, e.full_id), [])),
        }
        for e in envs
    ]
    alias_rows = [
        {
            "name": ref.name,
            "tag": ref.tag,
            "platforms": {a: t.to_json() for a, t in sorted(rec.platforms.items())},
        }
        for ref, rec in sorted(list_aliases(store), key=lambda x: str(x[0]))
    ]

    def human(_) -> str:
        if not env_rows and not alias_rows:
            return f"no environments in {store.url} (imgbuild resolve makes one)"
        lines = _table(
            ("REQ", "FULL", "ARCH", "RESOLVED", "PKGS", "ALIASES"),
            [
                (
                    short(r["req_id"]),
                    short(r["full_id"]),
                    r["arch"],
                    r["resolved_at"],
                    str(r["packages"]),
                    " ".join(r["aliases"]),
                )
                for r in env_rows
            ],
        )
        if alias_rows:
            rows = [
                (f"{a['name']}:{a['tag']}", arch, f"{short(t['req_id'])}:{short(t['full_id'])}")
                for a in alias_rows
                for arch, t in a["platforms"].items()
            ]
            lines += ["", *_table(("ALIAS", "ARCH", "ENV"), rows)]
        return "\n".join(lines)

    emit(ui, {"envs": env_rows, "aliases": alias_rows}, human)


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip()] + [fmt.format(*map(str, r)).rstrip() for r in rows]


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""
