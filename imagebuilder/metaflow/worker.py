"""The heavy phases, each run in a child process of the Metaflow one.

py-rattler may crash at interpreter exit (LOCAL-SERVICES.md): the Metaflow process that
launches a run lives for the whole run and must exit cleanly, so resolving, baking and
hydrating never load rattler into it. Each runs in a child that leaves through os._exit:

- `resolve_specs`: `python -m imagebuilder.metaflow.worker` (this module's main) reads the
  specs as JSON on stdin (secrets never on the command line) and runs the resolve pipeline
  (reuse by req_id, distinct requests solved in parallel, cache to the store);
- `push_env` / `create_env`: `python -m imagebuilder push|create ... --json`, the public CLI.

Children inherit stderr, so their progress shows up in the user's terminal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from imagebuilder.errors import ImgbuildError


@dataclass(frozen=True)
class Resolved:
    req_id: str
    full_id: str
    arch: str
    reused: bool


def _store_flags(store: str, s3_endpoint_url: str | None) -> list[str]:
    flags = ["--store", store]
    if s3_endpoint_url:
        flags += ["--s3-endpoint-url", s3_endpoint_url]
    return flags


def _error_from(out: str, code: int, what: str) -> ImgbuildError:
    """The child's `{"error": {...}}` as the same error here, or a plain one."""
    from imagebuilder.errors import BAD_INPUT
    from imagebuilder.urls import redact

    for line in reversed(out.strip().splitlines()):
        try:
            err = json.loads(line).get("error")
        except (ValueError, AttributeError):
            continue
        if isinstance(err, dict):
            return ImgbuildError(
                redact(err.get("message", "")), err.get("hint", ""), err.get("kind", "error"), code
            )
    return ImgbuildError(
        f"{what} failed (exit {code})", "see the messages above", "error", code or BAD_INPUT
    )


def _run(argv: list[str], what: str, stdin: str | None = None, env=None) -> dict:
    p = subprocess.run(
        argv,
        input=stdin,
        stdout=subprocess.PIPE,
        stderr=None,  # progress and messages go straight to the user
        text=True,
        env=env,
    )
    if p.returncode != 0:
        raise _error_from(p.stdout, p.returncode, what)
    try:
        return json.loads(p.stdout)
    except ValueError:
        raise ImgbuildError(f"{what}: unreadable output {p.stdout[-300:]!r}") from None


def resolve_specs(
    specs, store: str, s3_endpoint_url: str | None, secrets: dict, force: bool = False
) -> list[Resolved]:
    """Resolve (or reuse) and cache every spec; one child for all of them."""
    if not specs:
        return []
    doc = {
        "specs": [s.to_json() for s in specs],
        "store": store,
        "s3_endpoint_url": s3_endpoint_url,
        "secrets": secrets,
        "force": force,
    }
    out = _run(
        [sys.executable, "-m", "imagebuilder.metaflow.worker"], "resolving", stdin=json.dumps(doc)
    )
    return [Resolved(**r) for r in out["envs"]]


def push_env(
    env_ref: str,
    store: str,
    s3_endpoint_url: str | None,
    registry: str,
    base: str | None,
    arch: str,
) -> dict:
    """Bake ENV on base and push it; the push JSON ({digest, refs, ...})."""
    argv = [sys.executable, "-m", "imagebuilder", "push", env_ref, "--to", f"docker://{registry}"]
    argv += ["--arch", arch, "--json", *_store_flags(store, s3_endpoint_url)]
    if base:
        argv += ["--base", base]
    return _run(argv, f"baking {env_ref}")


def pack_env(env_ref: str, store: str, s3_endpoint_url: str | None, arch: str) -> dict:
    """Write ENV's pack into the store (a no-op when present): the task bootstrap then
    creates the env from one download instead of one per package."""
    argv = [sys.executable, "-m", "imagebuilder", "pack", env_ref, "--arch", arch, "--json"]
    argv += _store_flags(store, s3_endpoint_url)
    return _run(argv, f"packing {env_ref}")


def create_env(env_ref: str, prefix: str, store: str, s3_endpoint_url: str | None) -> dict:
    """Hydrate ENV at prefix on this machine (lock-protected; a no-op when it is there)."""
    argv = [sys.executable, "-m", "imagebuilder", "create", env_ref, "--prefix", prefix]
    argv += ["--json", *_store_flags(store, s3_endpoint_url)]
    return _run(argv, f"creating {env_ref}")


# --- the child ----------------------------------------------------------------------------------


def _main() -> int:
    from imagebuilder.cli.output import Ui
    from imagebuilder.inputs.collect import Collected
    from imagebuilder.install import allow_inprocess
    from imagebuilder.resolve.pipeline import Options, run
    from imagebuilder.spec import EnvSpec

    try:
        doc = json.loads(sys.stdin.read())
        specs = tuple(EnvSpec.from_json(s) for s in doc["specs"])
        flags = {"store": doc["store"]}
        if doc.get("s3_endpoint_url"):
            flags["s3_endpoint_url"] = doc["s3_endpoint_url"]
        ui = Ui(json=False, quiet=False, flags=flags)
        allow_inprocess()  # we leave through os._exit
        collected = Collected(specs=specs, sources=(), secrets=dict(doc.get("secrets") or {}))
        outcomes = run(collected, Options(force=bool(doc.get("force"))), ui)
        out = {
            "envs": [
                {
                    "req_id": o.env.req_id,
                    "full_id": o.env.full_id,
                    "arch": o.env.arch,
                    "reused": o.reused,
                }
                for o in outcomes
            ]
        }
        print(json.dumps(out), flush=True)
        return 0
    except ImgbuildError as e:
        print(json.dumps(e.to_json()), flush=True)
        return e.exit_code
    except Exception as e:  # a bug: one line (traceback with IMGBUILD_DEBUG)
        if os.environ.get("IMGBUILD_DEBUG"):
            import traceback

            traceback.print_exc()
        err = ImgbuildError(f"internal error: {type(e).__name__}: {e}", "", "internal")
        print(json.dumps(err.to_json()), flush=True)
        return 1


if __name__ == "__main__":
    code = _main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
