#!/usr/bin/env python3
"""The local test rig: real stand-ins for a conda channel, a PyPI index, OCI registries, S3
and a container runtime, all on 127.0.0.1, all state in one folder.

    python ci/rig.py up     --dir DIR [--only NAME,...]   start (or keep) the services
    python ci/rig.py down   --dir DIR                     stop exactly what `up` started
    python ci/rig.py env    --dir DIR [--export]          print DIR/rig.env
    python ci/rig.py status --dir DIR                     which services are alive

`up` is idempotent: a service that is alive and answering is kept; a dead one is restarted on
its previous port when that port is free. It prints each address and writes DIR/rig.env
(KEY=VALUE lines, read by tests/conftest.py through IMGBUILD_RIG_ENV). Services:
registry, registry_auth, s3, podman, channel, pypi, images (base images in the registry).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from services import debimage, podman, s3, static  # noqa: E402
from services.base import Rig, RigError, file_lock, strays, terminate  # noqa: E402
from services.registry import HtpasswdAuth, Registry  # noqa: E402

REGISTRIES = {
    "registry": Registry("registry", "IMGBUILD_RIG_REGISTRY"),
    "registry_auth": Registry(
        "registry_auth", "IMGBUILD_RIG_REGISTRY_AUTH", HtpasswdAuth("IMGBUILD_RIG_REGISTRY")
    ),
}


class Skipped(Exception):
    pass


def _podman(rig: Rig, got: dict) -> dict[str, str]:
    regs = [got[n][REGISTRIES[n].env_key] for n in REGISTRIES if n in got]
    return podman.up(rig, regs)


def _images_build(rig: Rig, got: dict) -> dict:
    return {"_images": debimage.build(log=lambda m: print(m, file=sys.stderr, flush=True))}


def _images(rig: Rig, got: dict) -> dict[str, str]:
    return debimage.publish(
        rig, got["images.build"]["_images"], got["registry"]["IMGBUILD_RIG_REGISTRY"]
    )


def _static(build: Callable, serve: Callable) -> Callable:
    def task(rig: Rig, got: dict) -> dict[str, str]:
        try:
            path = build(rig)
        except static.Missing as e:
            raise Skipped(f"{e} yet: tests that need it will skip") from None
        return serve(rig, path)

    return task


# name -> (needs, soft needs, task, env key shown by `up`)
TASKS: dict[str, tuple[tuple[str, ...], tuple[str, ...], Callable, str]] = {
    "registry": ((), (), lambda rig, got: REGISTRIES["registry"].up(rig), "IMGBUILD_RIG_REGISTRY"),
    "registry_auth": (
        (),
        (),
        lambda rig, got: REGISTRIES["registry_auth"].up(rig),
        "IMGBUILD_RIG_REGISTRY_AUTH",
    ),
    "s3": ((), (), lambda rig, got: s3.up(rig), "IMGBUILD_RIG_S3_ENDPOINT"),
    "podman": ((), ("registry", "registry_auth"), _podman, "IMGBUILD_RIG_PODMAN_SOCKET"),
    "channel": (
        (),
        (),
        _static(static.build_channel, static.serve_channel),
        "IMGBUILD_RIG_CHANNEL_URL",
    ),
    "pypi": ((), (), _static(static.build_index, static.serve_index), "IMGBUILD_RIG_INDEX_URL"),
    "images.build": ((), (), _images_build, ""),
    "images": (("registry", "images.build"), (), _images, "IMGBUILD_RIG_BASE_IMAGE"),
}
SERVICES = [n for n in TASKS if "." not in n]


def select(only: str | None) -> list[str]:
    if not only:
        return list(TASKS)
    wanted = {n.strip() for n in only.split(",") if n.strip()}
    unknown = wanted - set(SERVICES)
    if unknown:
        raise SystemExit(
            f"unknown service(s): {', '.join(sorted(unknown))}; known: {', '.join(SERVICES)}"
        )
    todo: set[str] = set()
    stack = list(wanted)
    while stack:
        n = stack.pop()
        if n not in todo:
            todo.add(n)
            stack.extend(TASKS[n][0])
    return [n for n in TASKS if n in todo]


def run_tasks(rig: Rig, names: list[str]) -> dict[str, tuple[str, float, str]]:
    """Run the tasks in parallel threads, each once its needs are done.
    Returns name -> (status, seconds, detail)."""
    futures: dict[str, Future] = {n: Future() for n in names}
    got: dict[str, dict] = {}
    report: dict[str, tuple[str, float, str]] = {}

    def worker(name: str) -> None:
        needs, soft, task, _ = TASKS[name]
        t0 = time.monotonic()
        try:
            for dep in needs + soft:
                if dep in futures:
                    try:
                        futures[dep].result()
                    except Exception as e:
                        if dep in needs:
                            raise Skipped(f"needs {dep}, which did not start") from e
            env = task(rig, got)
            got[name] = env
            report[name] = ("ok", time.monotonic() - t0, "")
            futures[name].set_result(env)
        except Skipped as e:
            report[name] = ("skipped", time.monotonic() - t0, str(e))
            rig.update(name.split(".")[0], skipped=str(e), env={})
            futures[name].set_exception(e)
        except Exception as e:  # noqa: BLE001 - reported, and `up` exits non-zero
            report[name] = ("FAILED", time.monotonic() - t0, f"{type(e).__name__}: {e}")
            rig.update(name.split(".")[0], env={})
            futures[name].set_exception(e)

    threads = [threading.Thread(target=worker, args=(n,), name=f"rig-{n}") for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return report


def write_env(rig: Rig) -> Path:
    env = {"IMGBUILD_RIG_DIR": str(rig.dir)}
    skipped = []
    for name, st in sorted(rig.state["services"].items()):
        if st.get("skipped"):
            skipped.append(name)
        env.update(st.get("env") or {})
    env["IMGBUILD_RIG_SKIPPED"] = ",".join(skipped)
    path = rig.dir / "rig.env"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{k}={v}\n" for k, v in sorted(env.items())))
    tmp.replace(path)
    return path


def up(rig: Rig, only: str | None) -> int:
    names = select(only)
    t0 = time.monotonic()
    for n in names:
        rig.service(n.split(".")[0]).pop("skipped", None)
    report = run_tasks(rig, names)
    failed = False
    for name in names:
        status, secs, detail = report[name]
        if "." in name and status == "ok":
            continue
        key = TASKS[name][3]
        st = rig.service(name.split(".")[0])
        where = (st.get("env") or {}).get(key, "") if status == "ok" else detail
        failed |= status == "FAILED"
        print(f"  {name:<14} {status:<8} {secs:5.1f}s  {where}", flush=True)
    path = write_env(rig)
    print(
        f"rig {'FAILED' if failed else 'up'} in {time.monotonic() - t0:.1f}s; env: {path}",
        flush=True,
    )
    return 1 if failed else 0


def down(rig: Rig) -> int:
    t0 = time.monotonic()
    (rig.dir / "rig.env").unlink(missing_ok=True)
    podman.down(rig)  # removes containers first, so none outlives its conmon
    pids = sorted(set(rig.pids()) | set(strays(rig.dir)))
    left = terminate(pids)
    for name in list(rig.state["services"]):
        rig.service(name)["pids"] = []
    rig.save()
    s3.down(rig)  # socket files weed leaves in /tmp
    left += strays(rig.dir)
    print(
        f"rig down in {time.monotonic() - t0:.1f}s: stopped {len(pids)} process(es)"
        + (f"; STILL ALIVE: {sorted(set(left))}" if left else ""),
        flush=True,
    )
    return 1 if left else 0


def status(rig: Rig) -> int:
    for name, st in sorted(rig.state["services"].items()):
        pids = rig.pids(name)
        state = "alive" if pids else ("skipped" if st.get("skipped") else "-")
        print(f"  {name:<14} {state:<8} {' '.join(map(str, pids))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("command", choices=["up", "down", "env", "status"])
    ap.add_argument("--dir", required=True, type=Path, help="rig folder (state, logs, data)")
    ap.add_argument("--only", help="comma-separated services to start (with what they need)")
    ap.add_argument("--export", action="store_true", help="env: prefix lines with `export `")
    args = ap.parse_args(argv)
    if args.command == "env":
        path = args.dir.resolve() / "rig.env"
        if not path.exists():
            print(
                f"no rig is up in {args.dir} (run: python ci/rig.py up --dir {args.dir})",
                file=sys.stderr,
            )
            return 1
        prefix = "export " if args.export else ""
        sys.stdout.write("".join(prefix + ln + "\n" for ln in path.read_text().splitlines()))
        return 0
    with file_lock(args.dir.resolve() / ".lock"):
        rig = Rig(args.dir)
        try:
            return {
                "up": lambda: up(rig, args.only),
                "down": lambda: down(rig),
                "status": lambda: status(rig),
            }[args.command]()
        except RigError as e:
            print(f"rig: {e}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
