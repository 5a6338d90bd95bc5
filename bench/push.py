"""Push benchmark: no-op push time and bytes uploaded after one package changed.

    python bench/push.py [--runs 3] [--mb 120] [--cli-runs 5] [--cli-mb 4] [--no-cli]

Starts a real docker-registry (127.0.0.1, plain HTTP) with a counting proxy in front.

Sink level (the registry sink alone, in this process): an image value shaped like an env (one
big python-like layer, mid-size and small package layers, incompressible content so sizes are
honest) pushed with the registry sink. Median of --runs:
  - cold push (every blob uploaded), for scale;
  - no-op push: a fresh client (new connections, ping, HEAD manifest, tags) — goal <= 0.5 s;
  - one package changed: bytes uploaded / bytes of the changed layer — goal <= 1.1x
    (the rest is the new config; manifests are not blob bytes).

CLI level (what a user measures: a whole `python -m imagebuilder push` process): a store with a
mixed env (conda python + tinyfoo + six from the local test channel, ci/channel/build.py, and a
wheel of --cli-mb MB of incompressible data), on a small base image by reference in the same
registry. Prints:
  - cold push (bake + upload), for scale;
  - no-op push, wall and CPU, median of --cli-runs — goal <= 0.5 s — next to the interpreter's
    own start (`python -c pass`), the floor no command goes under;
  - after one package changed (the wheel, new version), through the counting proxy: image blob
    bytes uploaded / bytes of the layers that changed — goal <= 1.1x; the SBOM artifact's
    bytes are shown apart (it is a separate artifact, attached once per image).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ci.services.registry_proxy import Proxy  # noqa: E402
from ci.services.registry_token import start_registry  # noqa: E402
from imagebuilder.oci import registry as sink_mod  # noqa: E402
from imagebuilder.oci.image import BytesBlob, Descriptor, Layer, Platform, make_image  # noqa: E402
from imagebuilder.registry import base_remote  # noqa: E402

MT = "application/vnd.oci.image.layer.v1.tar+zstd"


def layer(name: str, size: int, salt: str) -> Layer:
    data = hashlib.sha256(f"{name}:{salt}".encode()).digest() + os.urandom(max(0, size - 32))
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return Layer(Descriptor(MT, digest, len(data)), digest, BytesBlob(data), name)


def env_layers(total_mb: int) -> list[Layer]:
    mb = 1 << 20
    sizes = [("python", total_mb * mb // 3)]
    sizes += [(f"mid{i}", total_mb * mb // 30) for i in range(10)]
    sizes += [(f"small{i}", 150 * 1024) for i in range(20)]
    sizes += [("env-metadata", 40 * 1024)]
    return [layer(n, s, "v1") for n, s in sizes]


def image(layers: list[Layer]):
    cfg = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/opt/imgbuild/env/bin:/usr/bin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [x.diff_id for x in layers]},
    }
    return make_image(cfg, layers, Platform("linux", "amd64"), {})


def fresh_sink(host: str, repo: str):
    base_remote._clients.clear()  # as a new process would: no connection, no token
    return sink_mod.registry_sink(f"{host}/{repo}", insecure=True)


def sink_figures(host: str, proxy: Proxy, runs: int, mb: int) -> None:
    cold, noop, ratios, changed_s = [], [], [], []
    for run in range(runs):
        repo = f"bench/env{run}"
        layers = env_layers(mb)
        img = image(layers)
        t = time.perf_counter()
        fresh_sink(proxy.host, repo).write(img, ["full16", "team__ds--latest"])
        cold.append(time.perf_counter() - t)

        t = time.perf_counter()
        proxy.seen.clear()
        fresh_sink(proxy.host, repo).write(img, ["full16", "team__ds--latest"])
        noop.append(time.perf_counter() - t)
        assert proxy.upload_bytes() == 0, "a no-op push uploaded bytes"

        # One package changed: a mid-size layer gets new content.
        new = list(layers)
        new[3] = layer(layers[3].name, layers[3].descriptor.size, f"v2-{run}")
        img2 = image(new)
        proxy.seen.clear()
        t = time.perf_counter()
        fresh_sink(proxy.host, repo).write(img2, ["full16-b"])
        changed_s.append(time.perf_counter() - t)
        ratios.append(proxy.upload_bytes() / new[3].descriptor.size)
    size = sum(x.descriptor.size for x in layers) / (1 << 20)
    med = statistics.median
    print(f"sink level — image: {len(layers)} layers, {size:.0f} MB; median of {runs}")
    print(f"  cold push (all blobs):              {med(cold):7.3f} s")
    print(f"  no-op push:                         {med(noop):7.3f} s   (goal <= 0.5 s)")
    print(f"  one package changed, push time:     {med(changed_s):7.3f} s")
    print(
        f"  one package changed, uploaded/changed-layer bytes: {med(ratios):.4f}x   (goal <= 1.1x)"
    )


# --- the whole command ---------------------------------------------------------------------------


def _oci_helpers():
    """EnvFactory and make_wheel from tests/oci/ocikit.py: envs straight from the test
    channel's repodata, without a solver (the same envs the bake tests use)."""
    spec = importlib.util.spec_from_file_location("oci_helpers", ROOT / "tests/oci/ocikit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _timed(argv: list[str], env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall s, CPU s of the child, result)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return wall, cpu, p


def _data_wheel(helpers, folder: Path, version: str, mb: int) -> Path:
    data = base64.b64encode(os.urandom(mb << 20)).decode()  # incompressible-ish text
    return helpers.make_wheel(
        folder, "imgb-bench-data", version, {"imgb_bench_data.py": f"DATA = '{data}'\n"}
    )


def _layer_sizes(host: str, repo: str, digest: str) -> dict[str, int]:
    from imagebuilder.registry.client import RegistryClient

    doc = RegistryClient(host, insecure=True).get_manifest(repo, digest).json()
    return {d["digest"]: d["size"] for d in doc["layers"]}


def cli_figures(tmp: Path, reg: str, proxy: Proxy, runs: int, mb: int) -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "ci/channel/build.py")], capture_output=True, text=True
    )
    if r.returncode != 0:
        raise SystemExit(f"ci/channel/build.py failed:\n{r.stderr[-2000:]}")
    channel = Path(r.stdout.strip().splitlines()[-1])
    tmp.mkdir(parents=True, exist_ok=True)
    helpers = _oci_helpers()
    from imagebuilder.store.local import LocalStore

    store = LocalStore(tmp / "store")
    factory = helpers.EnvFactory(channel, tmp)
    names = ["python", "tinyfoo", "six"]
    env_a = factory.make(store, names, wheels=[_data_wheel(helpers, tmp / "w1", "1.0", mb)])
    env_b = factory.make(store, names, wheels=[_data_wheel(helpers, tmp / "w2", "2.0", mb)])
    base = [layer("base-a", 1 << 20, "base"), layer("base-b", 256 << 10, "base")]
    fresh_sink(reg, "bench/base").write(image(base), ["v1"])

    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGBUILD_", "METAFLOW_"))}
    # with bytecode cached, as an installed imgbuild runs (pip compiles it at install); the
    # cold push below writes it
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    (tmp / "home").mkdir()
    env.update(
        HOME=str(tmp / "home"),
        IMGBUILD_STORE=str(store.root),
        IMGBUILD_CACHE_DIR=str(tmp / "cache"),
        IMGBUILD_INSECURE_REGISTRIES=f"{reg},{proxy.host}",
    )
    cli = [sys.executable, "-m", "imagebuilder", "push"]

    def push(full_id: str, host: str) -> list[str]:
        return cli + [full_id[:16], "--to", f"docker://{host}/bench/cli"] + [
            "--base", f"{host}/bench/base:v1", "--json", "-q"
        ]  # fmt: skip

    cold_s, _, p = _timed(push(env_a.full_id, reg), env)
    first = json.loads(p.stdout)
    walls, cpus = [], []
    for _ in range(runs):
        w, c, p = _timed(push(env_a.full_id, reg), env)
        out = json.loads(p.stdout)
        assert out["digest"] == first["digest"] and out["bytes_written"] == 0, out
        walls.append(w)
        cpus.append(c)
    floor = [_timed([sys.executable, "-c", "pass"], env)[0] for _ in range(runs)]

    proxy.seen.clear()
    changed_s, _, p = _timed(push(env_b.full_id, proxy.host), env)
    second = json.loads(p.stdout)
    uploaded = proxy.upload_bytes()
    image_bytes = second["bytes_written"]  # the sink's count: layers and config
    old = _layer_sizes(reg, "bench/cli", first["digest"])
    new = _layer_sizes(reg, "bench/cli", second["digest"])
    changed = {d: n for d, n in new.items() if d not in old}
    changed_bytes = sum(changed.values())
    med = statistics.median
    print(
        f"CLI level — `python -m imagebuilder push` of a mixed env ({len(env_a.packages)} "
        f"packages, {len(old)} layers incl. 2 base), base by reference; median of {runs}"
    )
    print(f"  cold push (bake + upload):          {cold_s:7.3f} s")
    print(
        f"  no-op push:                         {med(walls):7.3f} s   (goal <= 0.5 s; "
        f"CPU {med(cpus):.3f} s; `python -c pass` {med(floor):.3f} s)"
    )
    print(f"  one package changed, push time:     {changed_s:7.3f} s (bakes the changed layer)")
    print(
        f"  one package changed: {len(changed)} layer(s) changed, {changed_bytes} bytes; "
        f"image blobs uploaded {image_bytes} bytes"
    )
    print(
        f"  one package changed, uploaded/changed-layer bytes: "
        f"{image_bytes / changed_bytes:.4f}x   (goal <= 1.1x; + SBOM artifact "
        f"{uploaded - image_bytes} bytes, all counted by the proxy: {uploaded})"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=120, help="approximate image size in MB")
    ap.add_argument("--cli-runs", type=int, default=5, help="no-op CLI pushes timed")
    ap.add_argument("--cli-mb", type=int, default=4, help="MB of the env's changing package")
    ap.add_argument("--no-cli", action="store_true", help="only the sink-level figures")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        reg = start_registry(Path(tmp) / "reg")
        proxy = Proxy(reg.host).start()
        try:
            sink_figures(reg.host, proxy, args.runs, args.mb)
            if not args.no_cli:
                cli_figures(Path(tmp) / "cli", reg.host, proxy, args.cli_runs, args.cli_mb)
        finally:
            proxy.stop()
            reg.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
