#!/bin/bash
# Brings up a throwaway single-node Ganeti 3.0 cluster (KVM hypervisor) with one running
# diskless KVM instance, inside a private network + UTS namespace. Idempotent: when the cluster
# is already up it only checks it; after a killed run or a restart it repairs stale namespace
# handles, stale pid files and dead daemons. Installs qemu-system-x86 and ganeti if missing
# (only that with --packages-only).
# Exit 77 (with the reason on stderr) when the machine cannot do this at all.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

reason=$(skip_reason)
if [ -n "$reason" ]; then log "cannot run here: $reason"; exit 77; fi

install_packages() {
  local missing="" p
  for p in $PACKAGES; do
    dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing="$missing $p"
  done
  [ -n "$missing" ] || return 0
  log "installing$missing (and dependencies)"
  mkdir -p "$IT_KEEP"
  dpkg-query -W -f='${Package}\n' | sort >"$IT_KEEP/packages.before"
  # Package scripts must not start sshd or Ganeti in the machine's own namespaces.
  local policy=/usr/sbin/policy-rc.d made_policy=""
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' >$policy && chmod 755 $policy && made_policy=1
  fi
  local rc=0
  export DEBIAN_FRONTEND=noninteractive
  apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null &&
    apt-get -q -y -o DPkg::Lock::Timeout=600 install --no-install-recommends $missing >"$IT_KEEP/apt.log" 2>&1 || rc=$?
  [ -z "$made_policy" ] || rm -f $policy
  [ $rc = 0 ] || { tail -20 "$IT_KEEP/apt.log" >&2; die "apt-get install failed ($rc)"; }
  rm -f "$IT_KEEP/apt.log"
  # Remember what this harness added, so cluster-down.sh --purge can remove exactly that.
  dpkg-query -W -f='${Package}\n' | sort | comm -13 "$IT_KEEP/packages.before" - >>"$IT_KEEP/packages.installed"
  rm -f "$IT_KEEP/packages.before"
  log "installed $(wc -l <"$IT_KEEP/packages.installed") packages"
}

# Stops Ganeti's daemons and instances left from an earlier run (and the processes whose pid
# files are given), removing their pid files.
stop_cluster_processes() {
  local pids="" f p
  for f in "$GNT_RUN"/*.pid "$GNT_RUN"/kvm-hypervisor/pid/* "$@"; do
    [ -f "$f" ] || continue
    p=$(pidfile_alive "$f") && pids="$pids $p"
    rm -f "$f"
  done
  # shellcheck disable=SC2086
  [ -z "$pids" ] || { log "stopping processes of an earlier run:$pids"; stop_pids $pids; }
}

ensure_namespaces() {
  if netns_ok && uts_ok; then return 0; fi
  log "creating namespaces (netns $IT_NS, UTS $IT_NODE)"
  # Processes of an earlier run live in namespaces that are gone or about to be replaced.
  stop_cluster_processes "$IT_SSHD_PID"
  ip netns delete "$IT_NS" 2>/dev/null || true
  rm -f "/run/netns/$IT_NS"         # a plain file left after a restart (/run is on disk here)
  umount "$IT_UTS" 2>/dev/null || true
  mkdir -p "$IT_RUN"
  rm -f "$IT_UTS" && touch "$IT_UTS"
  unshare --uts="$IT_UTS" hostname "$IT_NODE"
  ip netns add "$IT_NS"
  ip -n "$IT_NS" link set lo up
  ip -n "$IT_NS" link add "$IT_BRIDGE" type bridge
  ip -n "$IT_NS" addr add "$IT_NODE_IP/24" dev "$IT_BRIDGE"
  ip -n "$IT_NS" link set "$IT_BRIDGE" up
  [ "$(in_ns hostname)" = "$IT_NODE" ] || die "UTS namespace does not give hostname $IT_NODE"
}

write_files() {
  mkdir -p "/etc/netns/$IT_NS"
  cat >"/etc/netns/$IT_NS/hosts" <<EOF
127.0.0.1 localhost
$IT_NODE_IP $IT_NODE ${IT_NODE%%.*}
$IT_MASTER_IP $IT_CLUSTER ${IT_CLUSTER%%.*}
$IT_INSTANCE_IP $IT_INSTANCE ${IT_INSTANCE%%.*}
EOF
  # Unknown names fail at once instead of asking a resolver outside.
  echo "nameserver 127.0.0.1" >"/etc/netns/$IT_NS/resolv.conf"
  mkdir -p "$IT_FILE_STORAGE" "$IT_SRV/os/$IT_OS"
  echo "$IT_FILE_STORAGE" >"$IT_STORAGE_PATHS"
  # A no-op OS: the instance is diskless and never installed.
  local os=$IT_SRV/os/$IT_OS s
  echo 20 >"$os/ganeti_api_version"
  echo default >"$os/variants.list"
  : >"$os/parameters.list"
  for s in create import export rename verify; do
    printf '#!/bin/sh\nexit 0\n' >"$os/$s" && chmod 755 "$os/$s"
  done
}

ensure_sshd() {
  pidfile_alive "$IT_SSHD_PID" sshd >/dev/null && return 0
  log "starting sshd inside the namespace"
  mkdir -p /run/sshd
  [ -f /etc/ssh/ssh_host_rsa_key ] || ssh-keygen -A >/dev/null
  in_ns_reaped /usr/sbin/sshd -o PidFile="$IT_SSHD_PID" \
    -o ListenAddress="$IT_NODE_IP" -o ListenAddress=127.0.0.1
}

backup_root_ssh() {
  # Once per harness lifetime: a re-run must not take the cluster's keys for the original.
  if [ -e "$IT_KEEP/root-ssh.tar" ] || [ ! -d /root/.ssh ]; then return 0; fi
  tar -C /root -cpf "$IT_KEEP/root-ssh.tar" .ssh
}

init_cluster() {
  log "gnt-cluster init $IT_CLUSTER"
  backup_root_ssh
  in_ns_reaped gnt-cluster init \
    --enabled-hypervisors=kvm \
    --enabled-disk-templates=diskless,file --file-storage-dir="$IT_FILE_STORAGE" \
    --master-netdev="$IT_BRIDGE" --nic-parameters=mode=bridged,link="$IT_BRIDGE" \
    --no-etc-hosts --ssh-key-type=rsa --ssh-key-bits=2048 --user-shutdown=true \
    -H kvm:kernel_path=,initrd_path=,vnc_bind_address= \
    "$IT_CLUSTER"
}

# Starts every daemon that is not running; daemon-util refuses to start over a pid file that
# a gnt-* user owns, so stale ones go first.
ensure_daemons() {
  local d f started=""
  for d in $GNT_DAEMONS; do
    f=$GNT_RUN/$d.pid
    pidfile_alive "$f" "$d" >/dev/null && continue
    rm -f "$f"
    in_ns_reaped timeout 30 "$DAEMON_UTIL" start "$d" || { log "daemon-util start $d failed"; return 1; }
    started="$started ${d#ganeti-}"
  done
  [ -z "$started" ] || log "started:$started"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2 i
  shift 2
  for i in $(seq $((secs * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "timed out after ${secs}s waiting for $what"
  return 1
}

luxid_answers() { in_ns timeout 10 gnt-node list --no-headers -o name; }
master_ip_up() { ip -n "$IT_NS" -4 addr show dev "$IT_BRIDGE" | grep -q "inet $IT_MASTER_IP/"; }

# Master daemons answer and (on their own, a moment after they start) bring up the master IP.
master_ready() {
  wait_for 60 "luxid to answer queries" luxid_answers &&
    wait_for 20 "the master IP $IT_MASTER_IP" master_ip_up
}

ensure_instance() {
  local status
  status=$(in_ns timeout 60 gnt-instance list --no-headers -o status "$IT_INSTANCE" 2>/dev/null) || status=absent
  if [ "$status" = absent ]; then
    log "adding diskless KVM instance $IT_INSTANCE"
    in_ns timeout 120 gnt-instance add -t diskless -o "$IT_OS+default" -B memory=128M,vcpus=1 \
      --net 0:mac=auto --no-install --no-start --no-ip-check --no-name-check \
      -n "$IT_NODE" "$IT_INSTANCE" >/dev/null || return 1
    status=ADMIN_down
  fi
  if [ "$status" != running ]; then
    log "starting $IT_INSTANCE (was $status)"
    in_ns timeout 120 gnt-instance startup --force "$IT_INSTANCE" >/dev/null || return 1
  fi
}

prepare() {
  note_created /run/sshd /run/motd.dynamic /run/mount /run/netns /etc/netns /root/.ssh
  ensure_namespaces
  write_files
  ensure_sshd
}

fresh_cluster() {
  stop_cluster_processes
  init_cluster
  touch "$IT_KEEP/cluster-ok"
  master_ready || die "the new cluster's master daemons did not come up"
  ensure_instance || die "could not add and start $IT_INSTANCE"
}

resume_cluster() {
  ensure_daemons && master_ready && ensure_instance
}

main() {
  install_packages
  [ "${1:-}" != --packages-only ] || return 0
  qemu_restore
  if [ -e "$GNT_DATA/config.data" ] && [ ! -e "$IT_KEEP/cluster-ok" ]; then
    log "found a cluster that this harness did not finish initialising: starting over"
    "$HERE/cluster-down.sh"
  fi
  prepare
  if [ ! -e "$IT_KEEP/cluster-ok" ]; then
    fresh_cluster
  elif ! resume_cluster; then
    log "could not resume the existing cluster: starting over"
    "$HERE/cluster-down.sh"
    prepare
    fresh_cluster
  fi
  log "cluster $IT_CLUSTER up: master $IT_NODE, instance $IT_INSTANCE running"
}

main "$@"
