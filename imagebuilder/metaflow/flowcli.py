"""`python flow.py --environment=conda environment resolve|show [STEPS] [--json]`.

resolve: resolve (or reuse) and cache every step's environment, as `run` would, without
running anything (no bake, no hydrate). show: what each step would run in, from the store
only (no solve): the newest env of its request, or "not resolved".
"""

from __future__ import annotations

import json
import os

from metaflow._vendor import click
from metaflow.exception import MetaflowException


@click.group()
def cli():
    pass


def _environment(obj):
    env = obj.environment
    if not hasattr(env, "make_plan"):
        raise MetaflowException(
            "`environment` needs imgbuild's environment: add --environment=conda, e.g. "
            "`python flow.py --environment=conda environment show`"
        )
    return env


def _row(target, se, state: str) -> dict:
    row = {
        "step": target.step,
        "arch": target.arch,
        "remote": target.remote,
        "decorators": list(target.request.parts),
        "state": state,
    }
    if se is not None:
        for key in ("req_id", "full_id", "env_name", "image"):
            value = getattr(se, key)
            if value:
                row[key] = value
        if se.env_ref and not se.full_id:
            row["env_ref"] = se.env_ref
    return row


def _print(obj, rows: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"steps": {r["step"]: r for r in rows}}, indent=2, sort_keys=True))
        return
    if not rows:
        obj.echo("No step of this flow has an imgbuild environment.")
        return
    order = {n: i for i, n in enumerate(getattr(obj.graph, "sorted_nodes", ()))}
    rows = sorted(rows, key=lambda r: order.get(r["step"], len(order)))
    width = max(len(r["step"]) for r in rows)
    for r in rows:
        where = "remote" if r["remote"] else "local"
        env = r.get("env_name") or r.get("env_ref") or "-"
        click.echo(f"{r['step']:<{width}}  {r['arch']:<13} {where:<6} {r['state']:<12} {env}")


@cli.group(help="imgbuild environments of this flow's steps.")
def environment():
    pass


@environment.command(help="Resolve and cache the environment of each step (or of STEPS).")
@click.argument("steps", nargs=-1)
@click.option("--force", is_flag=True, help="Solve again even if a request has an env.")
@click.option(
    "--skip-metaflow-deps",
    is_flag=True,
    help="Do not add Metaflow's own needs (requests, boto3) to the environments.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def resolve(obj, steps, force, skip_metaflow_deps, as_json):
    env = _environment(obj)
    if skip_metaflow_deps:
        os.environ["IMGBUILD_SKIP_METAFLOW_DEPS"] = "1"
        env._settings = None
    _check_steps(obj, steps)
    plan = env.make_plan(obj.echo, steps or None, bake=False, hydrate=False, force=force)
    rows = [_row(t, plan.get(t.step), "resolved") for t in env.targets(steps or None)]
    _print(obj, rows, as_json)


@environment.command(help="Show the environment of each step (or of STEPS), from the store.")
@click.argument("steps", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")
@click.pass_obj
def show(obj, steps, as_json):
    from imagebuilder.errors import ImgbuildError
    from imagebuilder.metaflow.plan import lookup

    env = _environment(obj)
    _check_steps(obj, steps)
    targets = env.targets(steps or None)
    try:
        found = lookup(targets, env.settings())
    except ImgbuildError as e:
        raise MetaflowException(e.message) from None
    rows = [
        _row(t, found.get(t.step), "resolved" if t.step in found else "not resolved")
        for t in targets
    ]
    _print(obj, rows, as_json)


def _check_steps(obj, steps) -> None:
    names = {s.name for s in obj.flow}
    unknown = [s for s in steps if s not in names]
    if unknown:
        raise MetaflowException(
            f"no step {', '.join(unknown)} in {obj.flow.name} (steps: {', '.join(sorted(names))})"
        )
