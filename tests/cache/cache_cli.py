"""Test driver: cache one env record (JSON file) into a store, then write its record
(record_env: put_env and the re-check of its packages).

    python tests/cache/cache_cli.py ENV.json STORE_URL [--fmt .conda]

What `imgbuild resolve` does after its solve (cache_env, then put_env), without the solver,
so the cache phase is tested in its own process (kill points, concurrency). Exit codes and
error output follow the CLI's (imagebuilder.cli.output.run_cli).
"""

import json
import os
import sys

import click


@click.command()
@click.argument("env_file")
@click.argument("store_url")
@click.option("--fmt", default=None)
@click.option("--json", "json_out", is_flag=True)
def main(env_file, store_url, fmt, json_out):
    from imagebuilder.cache import cache_env, record_env
    from imagebuilder.cli.output import Ui
    from imagebuilder.config import load_config
    from imagebuilder.env import ResolvedEnv
    from imagebuilder.store import open_store

    with open(env_file) as f:
        env = ResolvedEnv.from_json(json.load(f))
    store = open_store(store_url, load_config())
    env = cache_env(env, store, ui=Ui(), fmt=fmt)
    record_env(env, store, ui=Ui(), fmt=fmt)
    click.echo(json.dumps({"key": env.key, "full_id": env.full_id, "env": env.to_json()}))


if __name__ == "__main__":
    from imagebuilder.cli.output import run_cli

    code = run_cli(main, sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
