#!/usr/bin/env bash
# The main job, end to end, on a machine with nothing running (README's first command):
# install imgbuild, then resolve a mixed conda + PyPI environment, cache every package in a
# local store, create it as a prefix and run it, bake it into a layered OCI image on a Debian
# base, inspect the image with skopeo and run it without a Docker engine (bwrap).
#
#   bash ci/demo.sh            IMGBUILD_DEMO_DIR=DIR (default /tmp/imgbuild-demo)
#
# No conda channel is reachable from these machines, so the conda side comes from the local
# channel of real archives that ci/channel builds (python 3.11 made from this machine's
# interpreter, compiled packages, noarch packages); the PyPI side comes from real PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/install.sh
# shellcheck source=/dev/null
source ci/cache/env.sh
W=${IMGBUILD_DEMO_DIR:-/tmp/imgbuild-demo}
rm -rf "$W" && mkdir -p "$W"
export IMGBUILD_STORE=$W/store IMGBUILD_OCI_DIR=$W/oci
step() { printf '\n== %s\n' "$*"; }

step "local conda channel (real archives, served on 127.0.0.1)"
CHANNEL=$("$PY" ci/channel/build.py | tail -n 1)
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PY" -m http.server --bind 127.0.0.1 --directory "$CHANNEL" "$PORT" >"$W/channel.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$PORT/noarch/repodata.json" >/dev/null 2>&1 && break; sleep 0.1; done
echo "channel: http://127.0.0.1:$PORT ($CHANNEL)"

step "imgbuild resolve: conda python + tinyfoo + imgb-cli, PyPI requests (caches every package)"
imgbuild resolve --conda 'python 3.11.*' --conda tinyfoo --conda imgb-cli \
  --pypi 'requests>=2.31' -c "http://127.0.0.1:$PORT" --index-url https://pypi.org/simple \
  --arch linux-64 --alias demo/app:v1
imgbuild show demo/app:v1

step "imgbuild create: the environment as a prefix, from the store only"
kill "$SERVER" && wait "$SERVER" 2>/dev/null || true # the channel is gone: the store is enough
imgbuild create demo/app:v1 --prefix "$W/env"
"$W/env/bin/python" -c 'import tinyfoo, requests, ssl; print("tinyfoo", tinyfoo.__version__, "requests", requests.__version__, ssl.OPENSSL_VERSION)'
"$W/env/bin/imgb-cli" # prints the prefix rattler wrote into its binary and its config

step "imgbuild push: a layered, reproducible OCI image on a Debian base"
BASE=$(cd ci && "$PY" -m services.debimage 2>/dev/null | awk '$1 == "base" {print $3}')
export IMGBUILD_BASE_IMAGE="oci:$BASE:bookworm" # the configured base: images tag as <full_id16>
imgbuild push demo/app:v1 --to "oci:$W/oci"
FULL16=$(imgbuild show demo/app:v1 --json | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["full_id"][:16])')
skopeo inspect "oci:$W/oci:$FULL16" | "$PY" -c 'import json, sys; d = json.load(sys.stdin); print("digest", d["Digest"]); print("layers", len(d["Layers"])); [print(" ", k, "=", v) for k, v in sorted(d["Labels"].items())]'

step "run the image without a Docker engine (skopeo copy, umoci unpack, bwrap)"
# Debian's umoci predates zstd layers (imgbuild's default): skopeo recompresses a copy
skopeo copy -q --dest-compress-format gzip "oci:$W/oci:$FULL16" "oci:$W/run:app"
umoci unpack --rootless --image "$W/run:app" "$W/bundle" >/dev/null
bwrap --bind "$W/bundle/rootfs" / --proc /proc --dev /dev --tmpfs /tmp --unshare-all --die-with-parent \
  --setenv PATH /opt/imgbuild/env/bin:/usr/bin:/bin \
  /opt/imgbuild/env/bin/python -c 'import sys, tinyfoo, requests; print("in the image:", sys.prefix, "tinyfoo", tinyfoo.__version__, "requests", requests.__version__)'

step "done"
echo "store: $IMGBUILD_STORE   images: $IMGBUILD_OCI_DIR   prefix: $W/env"
