#!/usr/bin/env bash
# A single-node SLURM on this machine, for tests/test_slurm.py: `.ci/slurm_local.sh start|stop|status`.
# As root: installs the Debian packages slurm-wlm and munge if missing, writes a minimal
# /etc/slurm/slurm.conf for this host's CPUs and memory (one partition "local", jobs may be requeued),
# and starts munged, slurmctld and slurmd; `stop` cancels every job and stops the three daemons.
# Exits non-zero with a one-line reason when SLURM cannot start (not root, no packages, ...).
set -euo pipefail

STATE=/var/lib/pti-lab-slurm     # pid files, spool and state of this SLURM
CONF=/etc/slurm/slurm.conf
LOG=$STATE/log

fail() { echo "slurm_local: $*" >&2; exit 1; }

install() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return
    [ "$(id -u)" = 0 ] || fail "not root: cannot install slurm-wlm and munge"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) >/dev/null 2>&1 \
        || fail "apt-get install slurm-wlm munge failed"
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi  # already running
    mkdir -p /etc/munge /var/lib/munge /var/log/munge /run/munge
    [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge /run/munge
    chmod 0400 /etc/munge/munge.key
    runuser -u munge -- munged || fail "munged did not start"
    munge -n | unmunge >/dev/null || fail "munge does not work"
}

write_conf() {
    local host node
    host=$(hostname -s)
    # slurmd -C: this host's CPUs, sockets, cores, threads and memory, as slurmd will see them
    node=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$host/; s/ UpTime=.*//")
    mkdir -p /etc/slurm "$STATE/ctld" "$STATE/d" "$LOG"
    cat > "$CONF" <<EOF
# Written by pti-lab .ci/slurm_local.sh: a single-node test cluster.
ClusterName=ptilab
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=300
KillWait=5
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

wait_idle() {
    local host state
    host=$(hostname -s)
    for _ in $(seq 60); do
        state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
        case "$state" in
            idle*|mixed*|allocated*) return 0 ;;
            down*|drain*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 1
    done
    fail "node $host not idle after 60 s (state: ${state:-none}); see $LOG"
}

start() {
    [ "$(id -u)" = 0 ] || fail "not root: cannot start slurmctld and slurmd"
    install
    start_munge
    if scontrol ping 2>/dev/null | grep -q "is UP"; then wait_idle; echo "slurm_local: already running"; return; fi
    write_conf
    slurmctld -c >"$LOG/slurmctld.out" 2>&1 || fail "slurmctld did not start; see $LOG"  # -c: no old state
    slurmd >"$LOG/slurmd.out" 2>&1 || fail "slurmd did not start; see $LOG"
    wait_idle
    echo "slurm_local: running ($(sinfo -h -o '%P %D node(s) %c CPUs %m MB'))"
}

stop_pid() {
    local file=$1 pid
    [ -s "$file" ] || return 0
    pid=$(cat "$file")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    rm -f "$file"
}

stop() {
    scancel --user=root >/dev/null 2>&1 || true
    stop_pid "$STATE/slurmd.pid"
    stop_pid "$STATE/slurmctld.pid"
    stop_pid /run/munge/munged.pid
    echo "slurm_local: stopped"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) scontrol ping && sinfo ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
