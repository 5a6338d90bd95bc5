"""`imgbuild verify [ENV]` and `imgbuild gc [--dry-run] [--grace 24h]`."""

from __future__ import annotations

import click

from imagebuilder.cli.output import Ui, common_options, emit


@click.command("verify")
@click.argument("env_ref", metavar="[ENV]", required=False)
@common_options
def verify(env_ref: str | None, ui: Ui) -> None:
    """Re-hash every object ENV (default: every env and alias in the store) references.

    Exit 6 when an object is missing or damaged, naming each.
    """
    from imagebuilder.errors import IntegrityError
    from imagebuilder.store import open_store
    from imagebuilder.store.verify import verify_store

    cfg = ui.config()
    store = open_store(cfg.store, cfg)
    envs = None
    if env_ref:
        from imagebuilder.catalog import find_envs

        envs = find_envs(store, env_ref)
    report = verify_store(store, envs)
    if not report.ok:
        if ui.json:  # one document: the report says ok=false and lists every problem
            emit(ui, report.to_json())
            raise click.exceptions.Exit(IntegrityError("").exit_code)
        for p in report.problems:
            click.echo(f"{p.kind}: {p.message}", err=True)
        first = report.problems[0]
        hint = (
            "re-run `imgbuild resolve` for the env (it restores missing packages), "
            "or `imgbuild get ... --with-packages` from another store"
        )
        if all(p.key.startswith(("blobs/", "layers/")) for p in report.problems):
            hint = "delete the damaged layer records and blobs: the next bake writes them again"
        raise IntegrityError(
            f"{len(report.problems)} problem(s) in {store.url}: {first.message}", hint
        )
    emit(
        ui,
        report.to_json(),
        lambda d: (
            f"ok: {d['envs']} envs, {d['aliases']} aliases, {d['objects']} objects "
            f"({d['bytes'] / 1e6:.1f} MB) verified in {store.url}"
        ),
    )


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@click.option("--grace", default="24h", show_default=True, help="Keep objects younger than this.")
@common_options
def gc(dry_run: bool, grace: str, ui: Ui) -> None:
    """Remove packages, builds, layers, packs and blobs no env, alias or live writer uses.

    Safe while other imgbuild processes write: objects younger than --grace are kept.
    """
    from imagebuilder.store import open_store
    from imagebuilder.store.gc import gc as run_gc
    from imagebuilder.store.gc import parse_duration

    grace_s = parse_duration(grace)
    cfg = ui.config()
    store = open_store(cfg.store, cfg)
    report = run_gc(store, grace_s=grace_s, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"

    def human(d: dict) -> str:
        lines = [f"{verb} {o['key']} ({o['size']} bytes)" for o in d["removed"]]
        lines.append(
            f"{verb} {len(d['removed'])} objects ({d['removed_bytes'] / 1e6:.1f} MB); "
            f"kept {d['kept']} referenced by {d['envs']} envs, {d['young']} unreferenced but "
            f"younger than {grace}"
        )
        return "\n".join(lines)

    emit(ui, report.to_json(), human)
