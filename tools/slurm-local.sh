#!/usr/bin/env bash
# A real one-node Slurm cluster (Debian's slurm-wlm: munged, slurmctld, slurmd) for tests and for
# people trying the data scientist -> Slurm operator hand-off (`llmctl train submit`).
#
#   tools/slurm-local.sh start    write the config, start munged, slurmctld, slurmd; wait until the
#                                 node is idle (a second start while it runs is a no-op)
#   tools/slurm-local.sh stop     stop the three daemons (the folder stays, for the logs)
#   tools/slurm-local.sh status   say whether it runs
#   tools/slurm-local.sh env      print `export SLURM_CONF=...` for sbatch, squeue, llmctl train
#
# Everything lives in $LLMCTL_SLURM_DIR (default /tmp/llmctl-slurm-<uid>): its own slurm.conf,
# its own munge socket and key, state, spool, logs. Nothing under /etc is changed, so it can sit
# beside a real cluster's client configuration; clients find it through SLURM_CONF.
# The daemons run as root (SlurmUser=root): on a one-node test cluster that is what Slurm's
# quick-start does, and a container has no systemd to run them as the slurm user.
# Settings chosen to work in a container without cgroups: proctrack/linuxproc, task/none,
# jobacct_gather/linux; no slurmdbd, so `sacct` reads job-completion data (jobcomp/filetxt, `sacct -c`).
set -euo pipefail

DIR=${LLMCTL_SLURM_DIR:-/tmp/llmctl-slurm-$(id -u)}
CONF=$DIR/slurm.conf
# Ports away from the defaults (6817/6818) so a system Slurm on the same machine is not disturbed.
CTLD_PORT=${LLMCTL_SLURM_CTLD_PORT:-16817}
SLURMD_PORT=${LLMCTL_SLURM_SLURMD_PORT:-16818}
PARTITION=${LLMCTL_SLURM_PARTITION:-debug}

die() { echo "slurm-local: $*" >&2; exit 1; }

need_tools() {
  local missing=()
  for t in munged slurmctld slurmd sbatch squeue scontrol sacct; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  if ((${#missing[@]})); then
    die "missing ${missing[*]}: install Debian's slurm-wlm and munge (make system-deps, as root)"
  fi
  [ "$(id -u)" = 0 ] || die "the one-node cluster runs its daemons as root; run as root"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  # RealMemory a little under the machine's, so slurmd's own check never drains the node.
  mem=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
  mkdir -p "$DIR"/{munge,state,spool,log}
  chmod 0700 "$DIR/munge"
  if [ ! -s "$DIR/munge/munge.key" ]; then
    (umask 077 && head -c 1024 /dev/urandom >"$DIR/munge/munge.key")
  fi
  cat >"$CONF.tmp" <<EOF
# written by tools/slurm-local.sh: a one-node cluster for tests
ClusterName=llmctl-local
SlurmctldHost=$host
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
# completed jobs stay visible to scontrol for an hour (the default is 300 s)
MinJobAge=3600
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.log
GresTypes=gpu
NodeName=$host CPUs=$cpus RealMemory=$mem Feature=ib-leaf-local State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
}

start() {
  need_tools
  if pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid"; then
    echo "slurm-local: already running ($CONF)"
    return 0
  fi
  stop >/dev/null 2>&1 || true
  local t0=$SECONDS
  write_conf
  munged --force --socket="$DIR/munge/munge.socket.2" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed" ||
    die "munged did not start; see $DIR/log/munged.log"
  export SLURM_CONF=$CONF
  slurmctld -f "$CONF" || die "slurmctld did not start; see $DIR/log/slurmctld.log"
  slurmd -f "$CONF" || die "slurmd did not start; see $DIR/log/slurmd.log"
  local state=""
  for _ in $(seq 1 60); do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -1 || true)
    case "$state" in
      idle* | mixed* | alloc*) break ;;
      # a node drained in an earlier run (its state is kept in state/): this run's config is new
      drain* | down*) scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
  done
  case "$state" in
    idle* | mixed* | alloc*) ;;
    *) die "node not ready (state '${state:-none}'); see $DIR/log/slurmctld.log and slurmd.log" ;;
  esac
  echo "slurm-local: up in $((SECONDS - t0)) s, partition $PARTITION, SLURM_CONF=$CONF"
}

stop_one() {
  local pidfile=$1
  if pid_alive "$pidfile"; then
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

stop() {
  stop_one "$DIR/slurmd.pid"
  stop_one "$DIR/slurmctld.pid"
  stop_one "$DIR/munge/munged.pid"
  echo "slurm-local: stopped"
}

status() {
  if pid_alive "$DIR/slurmctld.pid" && pid_alive "$DIR/slurmd.pid"; then
    SLURM_CONF=$CONF sinfo
  else
    echo "slurm-local: not running"
    return 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
