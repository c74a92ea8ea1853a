#!/bin/bash
# Tears down what cluster-up.sh built, from any state (up, half up, killed midway, after a
# restart): removes the instance and destroys the cluster when the master still answers, then
# stops every process left in the namespace, removes the namespaces and Ganeti's data, and
# restores root's ~/.ssh and the qemu binary. Packages stay installed unless --purge is given,
# which removes exactly the packages cluster-up.sh installed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

purge=""
case "${1:-}" in
  --purge) purge=1 ;;
  "") ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { log "not root: nothing to tear down"; exit 0; }
if foreign=$(foreign_cluster); then die "refusing: $GNT_DATA belongs to the cluster $foreign"; fi

destroy_cluster() {
  # Only when luxid is alive: with it dead every client call blocks for 30 s.
  pidfile_alive "$GNT_RUN/ganeti-luxid.pid" ganeti-luxid >/dev/null || return 0
  netns_ok && uts_ok || return 0
  if in_ns timeout 10 gnt-instance list --no-headers -o name 2>/dev/null | grep -qx "$IT_INSTANCE"; then
    log "removing instance $IT_INSTANCE"
    in_ns timeout 60 gnt-instance remove -f --shutdown-timeout=0 "$IT_INSTANCE" >/dev/null 2>&1 ||
      log "gnt-instance remove failed; cleaning up by force"
  fi
  log "gnt-cluster destroy"
  in_ns timeout 90 gnt-cluster destroy --yes-do-it >/dev/null 2>&1 ||
    log "gnt-cluster destroy failed; cleaning up by force"
}

stop_processes() {
  local pids="" f p
  for f in "$GNT_RUN"/*.pid "$GNT_RUN"/kvm-hypervisor/pid/* "$IT_SSHD_PID"; do
    [ -f "$f" ] || continue
    p=$(pidfile_alive "$f") && pids="$pids $p"
  done
  # Anything else started inside the namespace (metad on demand, helpers, a stray qemu),
  # except reaper.py, which reaps the others as they exit and then exits by itself.
  local reapers=""
  if netns_ok; then
    for p in $(ip netns pids "$IT_NS" 2>/dev/null); do
      alive "$p" || continue
      if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "/reaper.py "; then
        reapers="$reapers $p"
      else
        pids="$pids $p"
      fi
    done
  fi
  # shellcheck disable=SC2086
  pids=$(printf '%s\n' $pids | sort -un | xargs)
  # shellcheck disable=SC2086
  [ -z "$pids" ] || { log "stopping: $pids"; stop_pids $pids; }
  # shellcheck disable=SC2086
  stop_pids $reapers
}

remove_namespaces() {
  if [ -e "/run/netns/$IT_NS" ]; then
    ip netns delete "$IT_NS" 2>/dev/null || true
    rm -f "/run/netns/$IT_NS"
  fi
  if [ -e "$IT_UTS" ]; then
    umount "$IT_UTS" 2>/dev/null || true
    rm -f "$IT_UTS"
  fi
  rm -rf "$IT_RUN" "/etc/netns/$IT_NS"
  # ip netns makes /run/netns a mount point of its own.
  if [ -d /run/netns ] && [ -z "$(ls -A /run/netns)" ]; then umount /run/netns 2>/dev/null || true; fi
}

remove_data() {
  # The package owns the empty directories /var/lib/ganeti and /var/log/ganeti (root, 0755).
  local d
  for d in "$GNT_DATA" "$GNT_LOG"; do
    [ -d "$d" ] || continue
    find "$d" -mindepth 1 -delete
    chown root:root "$d" && chmod 755 "$d"
  done
  rm -rf "$GNT_RUN" "$IT_SRV" "$IT_STORAGE_PATHS"
  # Ganeti's own lock files, not ganeti-cmk-it.lock (whoever runs the harness
  # holds that one: flock /var/lock/ganeti-cmk-it.lock make integration).
  find /run/lock -maxdepth 1 -name 'ganeti-*.lock' ! -name 'ganeti-cmk-it.lock' -delete
}

restore_root_ssh() {
  if [ -e "$IT_KEEP/root-ssh.tar" ]; then
    rm -rf /root/.ssh && tar -C /root -xpf "$IT_KEEP/root-ssh.tar" && rm -f "$IT_KEEP/root-ssh.tar"
  fi
}

remove_created() {
  local p
  [ -f "$IT_KEEP/created" ] || return 0
  while read -r p; do
    case "$p" in /run/netns) [ -z "$(ls -A "$p" 2>/dev/null)" ] || continue ;; esac
    rm -rf "$p"
  done <"$IT_KEEP/created"
  rm -f "$IT_KEEP/created"
}

purge_packages() {
  local list=$IT_KEEP/packages.installed
  if [ -s "$list" ]; then
    log "purging the $(wc -l <"$list") packages cluster-up.sh installed"
    local out
    out=$(mktemp)
    # shellcheck disable=SC2046
    DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 purge \
      $(cat "$list") >"$out" 2>&1 || { tail -20 "$out" >&2; rm -f "$out"; die "apt-get purge failed"; }
    rm -f "$out"
    # lvm2's postinst makes its lock directory; purging leaves it.
    if grep -qx lvm2 "$list"; then rm -rf /run/lock/lvm; fi
  fi
  rm -rf "$IT_KEEP"
}

rm -f "$IT_KEEP/cluster-ok"
destroy_cluster
stop_processes
remove_namespaces
remove_data
restore_root_ssh
remove_created
qemu_restore
[ -z "$purge" ] || purge_packages
rmdir "$IT_KEEP" 2>/dev/null || true
log "down: no cluster, no namespaces, no Ganeti data left"
