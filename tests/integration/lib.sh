# Settings and helpers shared by the integration harness scripts (sourced, not run).
#
# Everything Ganeti uses on the network lives in the network namespace $IT_NS: a bridge with
# no uplink and TEST-NET-1 addresses. The node name comes from a private UTS namespace whose
# handle is $IT_UTS, so the machine's own hostname is never touched.

IT_NS=gntcmk
IT_BRIDGE=gntbr0
IT_NODE_IP=192.0.2.1
IT_MASTER_IP=192.0.2.100
IT_INSTANCE_IP=192.0.2.11
IT_NODE=node1.ganeti.test
IT_CLUSTER=cluster1.ganeti.test
IT_INSTANCE=inst1.ganeti.test
IT_OS=noop

IT_RUN=/run/ganeti-cmk-it                 # namespace handle and sshd pid (gone with the run)
IT_UTS=$IT_RUN/uts
IT_SSHD_PID=$IT_RUN/sshd.pid
IT_KEEP=/var/lib/ganeti-cmk-it            # what must survive a killed run: backups, package list
IT_SRV=/srv/ganeti
IT_FILE_STORAGE=$IT_SRV/file-storage
IT_STORAGE_PATHS=/etc/ganeti/file-storage-paths

GNT_DATA=/var/lib/ganeti
GNT_RUN=/var/run/ganeti
GNT_LOG=/var/log/ganeti
DAEMON_UTIL=/usr/lib/ganeti/daemon-util
# Start order of daemon-util start-all (kvmd runs because the cluster enables user shutdown).
GNT_DAEMONS="ganeti-noded ganeti-confd ganeti-wconfd ganeti-rapi ganeti-luxid ganeti-kvmd ganeti-mond"
QEMU=/usr/bin/qemu-system-x86_64
PACKAGES="qemu-system-x86 ganeti"

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C

_it_t0=${EPOCHREALTIME/[.,]/}
log() {
  local now=${EPOCHREALTIME/[.,]/}
  local ms=$(( (now - _it_t0) / 1000 ))
  printf '[%s %3d.%01ds] %s\n' "${0##*/}" $((ms / 1000)) $((ms % 1000 / 100)) "$*" >&2
}
die() { log "ERROR: $*"; exit 1; }

IT_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Runs a command inside the cluster's UTS + network namespaces (hostname $IT_NODE).
in_ns() { nsenter --uts="$IT_UTS" ip netns exec "$IT_NS" "$@"; }
# The same for a command that starts daemons: they are reaped at once when they exit.
in_ns_reaped() { in_ns /usr/bin/python3 "$IT_HERE/reaper.py" "$@"; }

# Prints why this machine cannot run the integration stage, or nothing when it can.
skip_reason() {
  if [ "$(id -u)" != 0 ]; then echo "not root (needs apt, namespaces and /dev/kvm)"; return; fi
  if [ ! -r /etc/debian_version ] || ! command -v apt-get >/dev/null; then
    echo "not a Debian system (needs apt-get and Debian's ganeti package)"; return
  fi
  case "$(cat /etc/debian_version)" in
    12*|bookworm*) ;;
    *) echo "Debian $(cat /etc/debian_version), not Debian 12 (ganeti 3.0 is packaged for bookworm)"; return ;;
  esac
  if [ ! -c /dev/kvm ]; then echo "no /dev/kvm character device"; return; fi
  if ! /usr/bin/python3 -c 'import os,fcntl;fd=os.open("/dev/kvm",os.O_RDWR);exit(fcntl.ioctl(fd,0xAE00)!=12)' 2>/dev/null; then
    echo "/dev/kvm cannot be opened or KVM_GET_API_VERSION is not 12"; return
  fi
  if ! command -v unshare >/dev/null || ! command -v ip >/dev/null; then
    echo "util-linux unshare or iproute2 ip missing"; return
  fi
  local foreign
  if foreign=$(foreign_cluster); then
    echo "this machine is a node of the Ganeti cluster $foreign, which the harness would destroy"
  fi
}

# Prints the name of a Ganeti cluster on this machine that is not the harness's own.
foreign_cluster() {
  local name
  name=$(cat "$GNT_DATA/ssconf_cluster_name" 2>/dev/null) || return 1
  [ "$name" != "$IT_CLUSTER" ] && echo "$name"
}

# True when PID is a live (not zombie) process, whose comm is $2 if given.
alive() {
  local pid=$1 want=${2:-} stat comm state
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  comm=${stat#*(}; comm=${comm%)*}
  state=${stat##*) }; state=${state%% *}
  [ "$state" != Z ] && [ "$state" != X ] || return 1
  [ -z "$want" ] || [ "$comm" = "$want" ]
}

# Prints the pid in pid file $1 if that process is alive (with comm $2 if given).
pidfile_alive() {
  local pid
  pid=$(head -c 32 "$1" 2>/dev/null | tr -dc 0-9) || return 1
  alive "$pid" "${2:-}" && echo "$pid"
}

# Sends TERM to the given pids, then KILL to those still alive after a few seconds.
# Zombies count as gone: PID 1 on these machines reaps late.
stop_pids() {
  local pid i left
  [ $# -gt 0 ] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for i in $(seq 50); do
    left=
    for pid in "$@"; do alive "$pid" && left="$left $pid"; done
    [ -n "$left" ] || return 0
    sleep 0.1
  done
  log "killing$left (did not stop on TERM)"
  # shellcheck disable=SC2086
  kill -KILL $left 2>/dev/null || true
}

# Records that PATH did not exist before the harness, so cluster-down.sh removes it again.
# Paths Ganeti's or sshd's own code creates (pam_motd, libmount) are listed here as well.
note_created() {
  local p
  mkdir -p "$IT_KEEP"
  for p in "$@"; do
    [ -e "$p" ] || grep -qxF "$p" "$IT_KEEP/created" 2>/dev/null || echo "$p" >>"$IT_KEEP/created"
  done
}

netns_ok() { [ -e "/run/netns/$IT_NS" ] && ip netns exec "$IT_NS" true 2>/dev/null; }
uts_ok() { [ -e "$IT_UTS" ] && nsenter --uts="$IT_UTS" true 2>/dev/null; }

# Puts back the qemu binary that swap-qemu.sh replaced (copy and rename, as dpkg would);
# cluster-up.sh and cluster-down.sh call it too, for a test that was killed.
qemu_restore() {
  local bak=$IT_KEEP/qemu-system-x86_64.orig
  [ -f "$bak" ] || return 0
  if ! cmp -s "$bak" "$QEMU"; then
    log "restoring the original $QEMU"
    cp -p "$bak" "$QEMU.it-restore" && mv -f "$QEMU.it-restore" "$QEMU"
  fi
  rm -f "$bak"
}
