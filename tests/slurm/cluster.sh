#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, from Debian's packages, for the SLURM test.
#   tests/slurm/cluster.sh up     # install (if needed), configure, start munged/slurmctld/slurmd, wait idle
#   tests/slurm/cluster.sh down   # stop every daemon by its pid file
# Needs root and apt (CI machines and the dev machine). No systemd: daemons are started by hand.
set -euo pipefail

RUN=${SKYSIFT_SLURM_RUN:-/tmp/skysift-slurm}
CONF=/etc/slurm/slurm.conf
PARTITION=ci

log() { printf 'cluster.sh: %s\n' "$*" >&2; }

install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
     && command -v sbatch >/dev/null; then
    return
  fi
  log "installing slurmctld slurmd slurm-client munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
}

configure() {
  mkdir -p "$RUN"/{state,spool,log} /etc/slurm /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 0755 /run/munge
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  fi
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  local host node mem
  host=$(hostname -s)
  # The node as slurmd sees it (CPUs, sockets, cores, memory), less 1 GiB for the daemons.
  node=$(slurmd -C | head -n 1)
  mem=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
  node=$(sed "s/RealMemory=[0-9]*/RealMemory=$((mem - 1024))/" <<<"$node")
  cat > "$CONF" <<CONF
ClusterName=skysift-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$RUN/state
SlurmdSpoolDir=$RUN/spool
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$RUN/log/slurmctld.log
SlurmdLogFile=$RUN/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
# squeue must still see finished jobs when the executor plugin polls (>= 3x its first wait)
MinJobAge=300
SchedulerType=sched/backfill
$node State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

up() {
  install
  configure
  down quiet
  runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
  slurmctld
  slurmd
  for _ in $(seq 1 60); do
    if sinfo -h -o '%t' 2>/dev/null | grep -qx 'idle'; then
      log "node idle: $(sinfo -h -o '%P %D %c %m %t')"
      return 0
    fi
    sleep 0.5
  done
  log "the node did not become idle; see $RUN/log"
  sinfo || true
  return 1
}

down() {
  local pidfile pid
  for pidfile in "$RUN/slurmd.pid" "$RUN/slurmctld.pid" /run/munge/munged.pid; do
    if [ -s "$pidfile" ]; then
      pid=$(cat "$pidfile")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$pidfile"
    fi
  done
  [ "${1:-}" = quiet ] || log "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
