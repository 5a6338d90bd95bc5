"""`imgbuild diff ENV ENV` and `imgbuild why PKG ENV`."""

from __future__ import annotations

import click

from imagebuilder.cli.output import Ui, common_options, emit


@click.command("diff")
@click.argument("env_a", metavar="ENV")
@click.argument("env_b", metavar="ENV")
@click.option("--arch", default=None, metavar="ARCH", help="Which env of a multi-arch alias.")
@common_options
def diff(env_a: str, env_b: str, arch: str | None, ui: Ui) -> None:
    """Compare two environments: packages added, removed and changed from the first to the
    second, and how many image layers they share (same base and compression assumed).

    \b
    Examples:
      imgbuild diff team/nlp:stable team/nlp:candidate
      imgbuild diff 3f2a9c0d1e2b4a5c 9e8d7c6b5a4f3e2d --json
    """
    from imagebuilder.catalog import find_env
    from imagebuilder.envdiff import diff_envs
    from imagebuilder.store import open_store

    cfg = ui.config()
    store = open_store(cfg.store, cfg)
    a = find_env(store, env_a, arch)
    b = find_env(store, env_b, arch)
    emit(ui, diff_envs(a, b, store), _human_diff)


def _human_diff(d: dict) -> str:
    out = [f"{d['a']['full_id'][:16]} -> {d['b']['full_id'][:16]} ({d['a']['arch']})"]
    for sign, key in (("+", "added"), ("-", "removed"), ("~", "changed")):
        for c in d[key]:
            if key == "changed":
                out.append(f"  ~ {c['kind']:<5} {c['name']}  {c['old']} -> {c['new']}")
            else:
                out.append(f"  {sign} {c['kind']:<5} {c['name']}  {c['new'] or c['old']}")
    n = len(d["added"]) + len(d["removed"]) + len(d["changed"])
    out.append(f"{n} difference(s), {d['unchanged']} package(s) unchanged")
    lay = d["layers"]
    out.append(
        f"layers: {lay['shared']} of {lay['b']} shared with the first "
        f"({lay['shared_bytes'] / 1e6:.1f} MB of packages not pushed or pulled again)"
    )
    return "\n".join(out)


@click.command("why")
@click.argument("package", metavar="PKG")
@click.argument("env_ref", metavar="ENV")
@click.option("--arch", default=None, metavar="ARCH", help="Which env of a multi-arch alias.")
@common_options
def why(package: str, env_ref: str, arch: str | None, ui: Ui) -> None:
    """Explain which request brought PKG into ENV: the chain of dependencies from each
    requirement (with the file or decorator it came from) down to PKG.

    \b
    Examples:
      imgbuild why openssl team/nlp:stable
      imgbuild why urllib3 3f2a9c0d1e2b4a5c --json
    """
    from imagebuilder.catalog import find_env
    from imagebuilder.envdiff import why as explain
    from imagebuilder.store import open_store

    cfg = ui.config()
    store = open_store(cfg.store, cfg)
    env = find_env(store, env_ref, arch)
    emit(ui, explain(env, package, store), _human_why)


def _human_why(d: dict) -> str:
    pkgs = ", ".join(
        f"{p['name']} {p['version']}" + (f" ({p['kind']})" if p["kind"] != "conda" else "")
        for p in d["package"]
    )
    if not d["requested_by"]:
        if d["locked"]:
            return f"{pkgs}: pinned by the imported lock file (no request to trace)"
        return f"{pkgs}: in the env, but no request depends on it (a solver choice)"
    out = [f"{pkgs} is in {d['env']['full_id'][:16]} because of:"]
    for c in d["requested_by"]:
        where = f"  [{c['origin']}]" if c.get("origin") else ""
        where += "  (implicit)" if c.get("implicit") else ""
        chain = " -> ".join(x.split(":", 1)[1] for x in c["chain"])
        out.append(f"  {c['request']}{where}: {chain}")
    return "\n".join(out)
