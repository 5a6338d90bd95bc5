"""Push benchmark: no-op push time and bytes uploaded after one package changed.

    python bench/push.py [--runs 3] [--mb 120]

Starts a real docker-registry (127.0.0.1, plain HTTP) with a counting proxy in front, builds an
image value shaped like an env (one big python-like layer, mid-size and small package layers,
incompressible content so sizes are honest) and pushes it with the registry sink. Prints,
median of N:
  - cold push (every blob uploaded), for scale;
  - no-op push: a fresh client (new connections, ping, HEAD manifest, tags) — goal <= 0.5 s;
  - one package changed: bytes uploaded / bytes of the changed layer — goal <= 1.1x
    (the rest is the new config; manifests are not blob bytes).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mb", type=int, default=120, help="approximate image size in MB")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        reg = start_registry(Path(tmp) / "reg")
        proxy = Proxy(reg.host).start()
        try:
            cold, noop, ratios, changed_s = [], [], [], []
            for run in range(args.runs):
                repo = f"bench/env{run}"
                layers = env_layers(args.mb)
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
            print(f"image: {len(layers)} layers, {size:.0f} MB; median of {args.runs}")
            print(f"cold push (all blobs):              {med(cold):7.3f} s")
            print(f"no-op push:                         {med(noop):7.3f} s   (goal <= 0.5 s)")
            print(f"one package changed, push time:     {med(changed_s):7.3f} s")
            print(
                f"one package changed, uploaded/changed-layer bytes: {med(ratios):.4f}x"
                "   (goal <= 1.1x)"
            )
        finally:
            proxy.stop()
            reg.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
