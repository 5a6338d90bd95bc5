"""`python -m imagebuilder.bootstrap ENV PREFIX [--store URL] [--arch ARCH] [--no-pack]
[--python PATH]`: create ENV at PREFIX from the store at task start; the env's interpreter is
the last line on stdout, everything else goes to stderr. Exit codes as CONTRACT.md. Leaves
through os._exit (py-rattler may crash at interpreter exit).

Store: --store, else IMGBUILD_STORE, else METAFLOW_IMGBUILD_STORE. S3 endpoint:
IMGBUILD_S3_ENDPOINT_URL, METAFLOW_IMGBUILD_S3_ENDPOINT_URL, METAFLOW_S3_ENDPOINT_URL,
AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL (first set wins).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

PROG = "imgbuild-bootstrap"


def _say(msg: str) -> None:
    if not os.environ.get("IMGBUILD_BOOTSTRAP_QUIET"):
        print(f"{PROG}: {msg}", file=sys.stderr, flush=True)


def _first_env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("env", metavar="ENV", help="req_id:full_id, full_id, env name or alias")
    p.add_argument("prefix", metavar="PREFIX", help="where the env is (or will be) created")
    p.add_argument("--store", help="store URL (folder or s3://bucket/prefix)")
    p.add_argument("--arch", help="the env's arch (default: this machine's)")
    p.add_argument("--no-pack", action="store_true", help="install per package, not the pack")
    p.add_argument("--python", help="interpreter for an env without conda python")
    return p.parse_args(argv)


def run(argv: list[str]) -> str:
    """Create the env; returns the interpreter path to print."""
    from imagebuilder import __version__
    from imagebuilder.errors import UsageError
    from imagebuilder.hydrate import already_there, check_platform, hydrate

    a = _args(argv)
    t0 = time.monotonic()
    prefix = os.path.abspath(os.path.expanduser(a.prefix))
    done = already_there(prefix, a.env, a.arch)
    if done is not None:
        _say(f"{prefix} already holds {done['env_name']}")
        return done["python"] or prefix
    url = a.store or _first_env("IMGBUILD_STORE", "METAFLOW_IMGBUILD_STORE")
    if not url:
        raise UsageError(
            "no store: pass --store or set IMGBUILD_STORE / METAFLOW_IMGBUILD_STORE",
            "the Metaflow plugin sets it for remote tasks",
        )
    endpoint = _first_env(
        "IMGBUILD_S3_ENDPOINT_URL",
        "METAFLOW_IMGBUILD_S3_ENDPOINT_URL",
        "METAFLOW_S3_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL",
    )
    from imagebuilder.bootstrap import envref, runtime
    from imagebuilder.bootstrap.store import open_read_store
    from imagebuilder.pack import pack_key

    store = open_read_store(url, endpoint)
    env = envref.find_env(store, a.env, a.arch)
    check_platform(env)
    use_pack = not a.no_pack and store.exists(pack_key(env))
    if use_pack:
        modules = ["zstandard"]
    elif env.conda_packages():
        modules = ["rattler", "installer", "zstandard"]
    else:
        modules = ["installer"]
    runtime.load(store, env.arch, modules, __version__, say=_say)
    from imagebuilder.install import allow_inprocess

    allow_inprocess()  # we leave through os._exit
    python = a.python or (None if env.conda_packages() else sys.executable)
    result = hydrate(env, store, prefix, python=python, from_pack=use_pack, info=_say)
    how = "already there" if not result.created else f"{result.method}"
    _say(f"{env.name} at {prefix} ({how}, {time.monotonic() - t0:.1f}s)")
    return result.python or prefix


def main(argv: list[str]) -> int:
    from imagebuilder.errors import ImgbuildError

    try:
        print(run(argv), flush=True)
        return 0
    except ImgbuildError as e:
        print(f"{PROG}: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"  hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except SystemExit as e:  # argparse
        return e.code if isinstance(e.code, int) else 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: one line, the traceback only when asked
        if os.environ.get("IMGBUILD_DEBUG"):
            import traceback

            traceback.print_exc()
        print(f"{PROG}: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
