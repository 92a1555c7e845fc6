#!/usr/bin/env bash
# A real Slurm on this machine: munged, slurmctld and two slurmd "nodes" (n1, n2) on
# 127.0.0.1, for tests/test_examples.py and .ci/run. Debian packages: slurmctld slurmd
# slurm-client munge. systemd is not needed: the daemons are started directly, in the
# foreground of background processes whose pids go to DIR/*.pid, and stopped by those pids.
#
#   tools/slurm_local.sh start DIR    # prints SLURM_CONF=DIR/slurm.conf once both nodes are idle
#   tools/slurm_local.sh stop DIR
#
# start exits 1 with one line on stderr when the daemons cannot start (not installed, no
# munge key, ...); the tests then skip with that line.
set -uo pipefail

cmd=${1:-}; dir=${2:-}
[[ -n $cmd && -n $dir ]] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
fail() { echo "slurm_local: $*" >&2; "$0" stop "$dir" >/dev/null 2>&1; exit 1; }

stop() {
    local f pid
    for f in "$dir"/slurmd-n1.pid "$dir"/slurmd-n2.pid "$dir"/slurmctld.pid "$dir"/munged.pid; do
        [[ -f $f ]] || continue
        pid=$(cat "$f"); rm -f "$f"
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [[ -f $dir/munge.dir ]]; then rm -rf "$(cat "$dir/munge.dir")"; rm -f "$dir/munge.dir"; fi
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start() {
    for bin in munged slurmctld slurmd sbatch sinfo; do
        command -v "$bin" >/dev/null || [[ -x /usr/sbin/$bin ]] || fail "$bin is not installed (apt-get install slurmctld slurmd slurm-client munge)"
    done
    [[ -r /etc/munge/munge.key ]] || fail "no munge key /etc/munge/munge.key (the munge package creates it)"
    mkdir -p "$dir/state" "$dir/spool-n1" "$dir/spool-n2" || fail "cannot create $dir"
    # munged runs as the munge user: its folder must be reachable by it (DIR may not be)
    local mdir; mdir=$(mktemp -d /tmp/slurm_local-munge.XXXXXX) || fail "cannot create a munge folder in /tmp"
    chmod 755 "$mdir"; chown munge: "$mdir" 2>/dev/null; echo "$mdir" >"$dir/munge.dir"
    local host; host=$(hostname -s)
    cat >"$dir/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmUser=$(id -un)
AuthType=auth/munge
AuthInfo=socket=$mdir/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool-%n
SlurmctldPidFile=$dir/slurmctld.daemon.pid
SlurmdPidFile=$dir/slurmd-%n.daemon.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmdParameters=config_overrides
MinJobAge=5
SchedulerParameters=batch_sched_delay=0
EnforcePartLimits=ALL
ReturnToService=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=n1 NodeAddr=127.0.0.1 NodeHostname=$host Port=$(free_port) CPUs=4 State=UNKNOWN
NodeName=n2 NodeAddr=127.0.0.1 NodeHostname=$host Port=$(free_port) CPUs=4 State=UNKNOWN
PartitionName=local Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
CONF
    local conf=$dir/slurm.conf
    # munged as the munge user, with the package's key, on a socket of our own
    runuser -u munge -- /usr/sbin/munged -F --socket="$mdir/munge.socket" \
        --pid-file="$mdir/munged.pid" --log-file="$mdir/munged.log" \
        --seed-file="$mdir/munged.seed" >/dev/null 2>&1 &
    echo $! >"$dir/munged.pid"
    for _ in $(seq 50); do [[ -S $mdir/munge.socket ]] && break; sleep 0.1; done
    [[ -S $mdir/munge.socket ]] || fail "munged did not start (see $mdir/munged.log)"
    /usr/sbin/slurmctld -D -i -f "$conf" >"$dir/slurmctld.out" 2>&1 &
    echo $! >"$dir/slurmctld.pid"
    for node in n1 n2; do
        /usr/sbin/slurmd -D -N "$node" -f "$conf" >"$dir/slurmd-$node.out" 2>&1 &
        echo $! >"$dir/slurmd-$node.pid"
    done
    for _ in $(seq 300); do
        [[ $(SLURM_CONF=$conf sinfo -h -o '%T' -N 2>/dev/null | grep -c idle) == 2 ]] && { echo "SLURM_CONF=$conf"; return 0; }
        for f in slurmctld slurmd-n1 slurmd-n2; do
            kill -0 "$(cat "$dir/$f.pid")" 2>/dev/null || fail "$f exited: $(tail -n 1 "$dir/$f.out" 2>/dev/null)"
        done
        sleep 0.1
    done
    fail "the nodes did not become idle within 30 s (see $dir/slurmctld.log)"
}

case $cmd in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
