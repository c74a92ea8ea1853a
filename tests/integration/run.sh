#!/bin/bash
# The integration stage (make integration): install qemu-system-x86 and ganeti if missing,
# bring up a single-node Ganeti cluster with a KVM instance in private namespaces, run the
# tests marked "integration" against it, tear it all down, and print how long each step took.
# Usage: run.sh PYTHON [PYTEST_ARGS...]   (PYTHON: the test virtualenv's interpreter)
# Not root / not Debian 12 / no usable /dev/kvm: skip, except with CI=true, where that fails.
# KEEP_CLUSTER=1 leaves the cluster up afterwards (tear it down with cluster-down.sh).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

PYTHON=${1:?usage: run.sh PYTHON [PYTEST_ARGS...]}
shift

reason=$(skip_reason)
if [ -n "$reason" ]; then
  if [ "${CI:-}" = true ]; then
    echo "integration: FAILED: CI must not skip the integration stage: $reason" >&2
    exit 1
  fi
  echo "integration: SKIPPED: $reason"
  exit 0
fi

timings=""
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
start=$(now_ms)
step() {  # step NAME COMMAND...: run it, record its duration
  local name=$1 t rc=0
  shift
  t=$(now_ms)
  "$@" || rc=$?
  t=$(( $(now_ms) - t ))
  timings="$timings $name $((t / 1000)).$((t % 1000 / 100))s"
  return $rc
}

report() {
  local total=$(( $(now_ms) - start ))
  echo "integration timing:$timings, total $((total / 1000)).$((total % 1000 / 100))s"
}

show_logs() {
  local f
  for f in "$GNT_LOG"/node-daemon.log "$GNT_LOG"/commands.log "$GNT_LOG"/kvm/*.log; do
    [ -s "$f" ] || continue
    echo "----- last lines of $f" >&2
    tail -n 25 "$f" >&2
  done
}

finish() {
  local rc=$1
  trap - EXIT INT TERM
  [ "$rc" = 0 ] || show_logs
  if [ "${KEEP_CLUSTER:-}" = 1 ]; then
    echo "integration: KEEP_CLUSTER=1: cluster left up; remove it with $HERE/cluster-down.sh" >&2
  else
    step down "$HERE/cluster-down.sh" || rc=1
  fi
  report
  exit "$rc"
}
trap 'finish 1' INT TERM
trap 'finish $?' EXIT

# A killed earlier run may have left a cluster in any state: start from nothing.
step leftovers "$HERE/cluster-down.sh" || exit 1
step packages "$HERE/cluster-up.sh" --packages-only || exit 1
step up "$HERE/cluster-up.sh" || exit 1
cd "$ROOT" || exit 1
rc=0
step tests "$PYTHON" -m pytest -m integration "$HERE" "$@" || rc=$?
if [ "$rc" = 5 ]; then echo "integration: FAILED: no integration test ran" >&2; fi
exit "$rc"
