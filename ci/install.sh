#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian 12 machine. Idempotent and quick when
# nothing is missing: apt runs only for missing packages, pip only when pyproject.toml changed.
#
#   bash ci/install.sh            (as root)
#
# Writes ci/cache/env.sh (PY=<the python used>, PATH with its scripts) for ci/test.sh.
# IMGBUILD_PYTHON=/path/to/python picks the interpreter; a Debian "externally managed"
# python3 gets a .venv instead.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s.%N)

APT_PACKAGES=(
  # OCI: registry, copy/inspect/unpack, run images without a Docker engine
  docker-registry skopeo umoci podman runc buildah conmon catatonit containernetworking-plugins
  uidmap slirp4netns fuse-overlayfs
  # registry auth, packaging tools, conda/wheel building, sandboxing
  apache2-utils patchelf bubblewrap zstd bzip2 xz-utils git curl ca-certificates gcc libc6-dev
  make dpkg-dev
  # a python to install the project into (Debian's, when the machine has no other)
  python3 python3-venv python3-pip
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "install: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # the package's own registry service (htpasswd, all interfaces) is not ours: keep it off
  if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
elif ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
  # ci/services/debimage.py resolves and downloads .debs: it needs package lists
  apt-get update -qq
fi

# -- python ----------------------------------------------------------------------------------
PY=${IMGBUILD_PYTHON:-}
if [[ -z "$PY" && -x .venv/bin/python ]]; then
  PY=$PWD/.venv/bin/python
fi
if [[ -z "$PY" ]]; then
  PY=$(command -v python3)
  if "$PY" -c 'import os, sys, sysconfig; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
    echo "install: $PY is externally managed (PEP 668): using a .venv"
    "$PY" -m venv .venv
    PY=$PWD/.venv/bin/python
  fi
fi
PY=$("$PY" -c 'import sys; assert sys.version_info >= (3, 10), sys.version; print(sys.executable)') \
  || { echo "install: $PY is older than Python 3.10" >&2; exit 1; }

mkdir -p ci/cache
stamp="ci/cache/.pip-$(sha256sum < pyproject.toml | cut -c1-16)-$("$PY" -c 'import sys; print(sys.prefix.replace("/", "_"))')"
if [[ -f "$stamp" ]] && "$PY" -c 'import imagebuilder, pytest, boto3, docker, xdist' 2>/dev/null \
    && [[ "$("$PY" -c 'import imagebuilder, os; print(os.path.dirname(os.path.dirname(os.path.realpath(imagebuilder.__file__))))')" == "$PWD" ]]; then
  echo "install: python packages up to date ($PY)"
else
  # pip >= 24.2 verifies TLS through truststore (honours SSL_CERT_FILE, as the index tests expect)
  if ! "$PY" -c 'import sys, pip; sys.exit(tuple(map(int, pip.__version__.split(".")[:2])) < (24, 2))'; then
    echo "install: upgrading pip in $PY"
    "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore -U 'pip>=24.2'
  fi
  echo "install: pip install -e '.[test]' ($PY)"
  if ! "$PY" -m pip install -q --disable-pip-version-check --root-user-action=ignore -e '.[test]' \
      > ci/cache/pip.log 2>&1; then
    tail -40 ci/cache/pip.log >&2
    echo "install: pip install failed (full log: ci/cache/pip.log)" >&2
    exit 1
  fi
  rm -f ci/cache/.pip-*
  touch "$stamp"
fi

bindir=$(dirname "$("$PY" -c 'import sys; print(sys.executable)')")
scripts=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
cat > ci/cache/env.sh <<EOF
PY=$PY
export PATH="$scripts:$bindir:\$PATH"
EOF

# -- check -----------------------------------------------------------------------------------
export PATH="$scripts:$bindir:$PATH"
for tool in docker-registry skopeo umoci podman runc htpasswd patchelf bwrap zstd weed moto_server ruff; do
  command -v "$tool" >/dev/null || { echo "install: $tool not found after install" >&2; exit 1; }
done
awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "install: done in %.1fs\n", b - a }'
