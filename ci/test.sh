#!/usr/bin/env bash
# THE test command (README, .ci/run): install, start the rig, lint, run every test, stop the
# rig, print the time of each phase. Exits with pytest's status (or ruff's, if only lint
# failed). Extra arguments go to pytest, e.g. `bash ci/test.sh -k registry -x`.
#
#   IMGBUILD_TEST_JOBS=N   pytest-xdist workers (default 2; 0 = no xdist)
#   IMGBUILD_RIG_DIR=DIR   rig folder (default: a new /tmp/imgbuild-rig-<hex>, removed after
#                          a green run, kept with its logs after a red one)
set -uo pipefail
cd "$(dirname "$0")/.."

PHASES=()
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
phase_done() { PHASES+=("$(printf '%-10s %7ss  %s' "$1" "$2" "$3")"); }

T0=$(now)
# lowercase: `podman run oci:DIR` names the image after DIR, and image names are lowercase
RIG_DIR=${IMGBUILD_RIG_DIR:-/tmp/imgbuild-rig-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')}
mkdir -p "$RIG_DIR"
RIG_UP=0

finish() {
  local rc=$?
  trap - EXIT INT TERM
  if ((RIG_UP)); then
    local t down_rc
    t=$(now)
    "$PY" ci/rig.py down --dir "$RIG_DIR"
    down_rc=$?
    phase_done "rig down" "$(took "$t")" "$( ((down_rc == 0)) && echo ok || echo "FAILED ($down_rc)")"
    ((rc == 0 && down_rc != 0)) && rc=$down_rc
    if ((rc == 0)) && [[ -z "${IMGBUILD_RIG_DIR:-}" ]]; then
      rm -rf "$RIG_DIR"
    else
      echo "rig folder kept (logs in $RIG_DIR/logs)"
    fi
  fi
  echo
  echo "== phase times"
  printf '  %s\n' "${PHASES[@]}"
  printf '  %-10s %7ss  exit %s\n' "total" "$(took "$T0")" "$rc"
  exit "$rc"
}
trap finish EXIT
trap 'exit 130' INT TERM

# -- install ---------------------------------------------------------------------------------
t=$(now)
echo "== install"
if ! bash ci/install.sh; then
  phase_done install "$(took "$t")" FAILED
  exit 1
fi
# shellcheck source=/dev/null
source ci/cache/env.sh
phase_done install "$(took "$t")" ok

# -- rig up ----------------------------------------------------------------------------------
t=$(now)
echo "== rig up ($RIG_DIR)"
RIG_UP=1
if ! "$PY" ci/rig.py up --dir "$RIG_DIR"; then
  phase_done "rig up" "$(took "$t")" FAILED
  for f in "$RIG_DIR"/logs/*.log; do echo "--- $f"; tail -20 "$f"; done
  exit 1
fi
phase_done "rig up" "$(took "$t")" ok
export IMGBUILD_RIG_ENV=$RIG_DIR/rig.env

# -- lint ------------------------------------------------------------------------------------
t=$(now)
echo "== lint: ruff check ."
"$PY" -m ruff check .
LINT=$?
phase_done lint "$(took "$t")" "$([[ $LINT == 0 ]] && echo ok || echo FAILED)"

# -- tests -----------------------------------------------------------------------------------
t=$(now)
JOBS=${IMGBUILD_TEST_JOBS:-2}
XDIST=()
if [[ "$JOBS" != 0 ]] && "$PY" -c 'import xdist' 2>/dev/null; then
  XDIST=(-n "$JOBS")
fi
echo "== tests: pytest ${XDIST[*]} $*"
"$PY" -m pytest -ra --durations=20 "${XDIST[@]}" "$@"
PYTEST=$?
phase_done tests "$(took "$t")" "exit $PYTEST"

((PYTEST == 0 && LINT != 0)) && exit "$LINT"
exit "$PYTEST"
