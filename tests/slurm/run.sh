#!/usr/bin/env bash
# The Slurm path, for real: a one-node Slurm cluster on this machine
# (munged, slurmctld and slurmd on localhost from Debian's slurm-wlm and
# munge, as root, without systemd), a coordinator, the tiny `slurm` sweep,
# and deploy/slurm/worker.sbatch submitted as a 2-task job array. One task
# is scancel'ed while its worker trains: its trial must go back to the queue
# without counting as a failure (the sweep allows one attempt, so a counted
# failure would end the trial `failed`), and the sweep must end with every
# trial done and exactly one final series per trial. The other task's worker
# then exits by itself once nothing is left to lease.
#
# Usage: tests/slurm/run.sh [GROKSWEEP_BINARY]   (default target/debug/groksweep)
# Needs root and the packages slurm-wlm and munge (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
bin=$(realpath "${1:-target/debug/groksweep}")
work=$(mktemp -d /tmp/groksweep-slurm.XXXXXX)
chmod 0755 "$work"  # munged runs as the munge user
export SLURM_CONF="$work/slurm.conf"
pids=()

log() { echo "[slurm test] $*"; }
stop_all() {
    local status=$?
    if [[ -n "${job:-}" ]]; then scancel "$job" 2>/dev/null || true; fi
    # Every daemon this script started, by its pid.
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [[ $status -ne 0 ]]; then
        log "FAILED; logs follow"
        for file in "$work"/*.log "$work"/*.out; do
            [[ -f "$file" ]] && { echo "---- $file"; tail -40 "$file"; }
        done
    fi
    rm -rf "$work"
    exit $status
}
trap stop_all EXIT
fail() { log "FAIL: $*"; exit 1; }
wait_for() { # seconds, description, command...
    local limit=$1 what=$2; shift 2
    for _ in $(seq $((limit * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    fail "timed out after ${limit}s waiting for $what"
}

# -- munge: a key, and munged as the munge user
if [[ ! -s /etc/munge/munge.key ]]; then
    mungekey --create --force
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
mkdir -p "$work/munge"
chown munge:munge "$work/munge"
runuser -u munge -- /usr/sbin/munged --socket="$work/munge/munge.socket" --pid-file="$work/munge/munged.pid" \
    --log-file="$work/munge/munged.log" --seed-file="$work/munge/munged.seed"
wait_for 10 "munged's pid file" test -s "$work/munge/munged.pid"
pids+=("$(cat "$work/munge/munged.pid")")

# -- slurm.conf for one node: this machine as `localhost`
node=$(slurmd -C | head -1)
cpus=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node")
memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
mkdir -p "$work/state" "$work/spool"
cat > "$SLURM_CONF" <<CONF
ClusterName=groksweep-ci
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$work/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
KillWait=30
DefMemPerCPU=1024
NodeName=localhost CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=ci Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
/usr/sbin/slurmctld -f "$SLURM_CONF"
wait_for 20 "slurmctld's pid file" test -s "$work/slurmctld.pid"
pids+=("$(cat "$work/slurmctld.pid")")
/usr/sbin/slurmd -f "$SLURM_CONF" -N localhost
wait_for 20 "slurmd's pid file" test -s "$work/slurmd.pid"
pids+=("$(cat "$work/slurmd.pid")")
wait_for 30 "the node to be idle" bash -c "sinfo -h -N -o %T | grep -q idle"
log "slurm is up: $(sinfo -h -N -o '%N %T %c CPUs')"

# -- the coordinator, and the sweep
"$bin" coordinator --listen 127.0.0.1:0 --data-dir "$work/data" --lease-ttl-secs 10 --heartbeat-secs 1 --roll-secs 1 \
    > "$work/coordinator.out" 2> "$work/coordinator.log" &
pids+=("$!")
wait_for 20 "the coordinator's address" grep -q "listening on" "$work/coordinator.out"
address=$(sed -n 's/^coordinator listening on //p' "$work/coordinator.out")
"$bin" submit tests/fixtures/slurm.yaml --coordinator "$address"

# -- the worker array, through sbatch, as a user would submit it
cd "$work"
job=$(GROKSWEEP_COORDINATOR="$address" GROKSWEEP_BIN="$bin" GROKSWEEP_EXIT_WHEN_IDLE=3 sbatch --parsable --array=0-1 --mem=1G \
    --output="$work/worker-%A_%a.out" --chdir="$work" "$repo/deploy/slurm/worker.sbatch")
cd "$repo"
log "submitted job array $job"
wait_for 60 "both array tasks to run" bash -c "[[ \$(squeue -h -j $job -t RUNNING -o %i | wc -l) -eq 2 ]]"
log "squeue: $(squeue -h -j "$job" -o '%i %T %R' | tr '\n' ';')"

status_json() { "$bin" status --coordinator "$address" --sweep slurm --json; }
# Task 0's worker is named slurm-<job>_0; cancel it once it holds a trial.
victim="slurm-${job}_0"
wait_for 60 "task 0's worker to train a trial" bash -c \
    "'$bin' status --coordinator '$address' --sweep slurm --json | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if any(t[\"status\"]==\"running\" and (t[\"worker\"] or \"\").endswith(\"-$victim\") for t in s[\"trials\"]) else 1)'"
trial=$(status_json | python3 -c "import json,sys; print(next(t['trial_id'] for t in json.load(sys.stdin)['trials'] if t['status']=='running' and (t['worker'] or '').endswith('-$victim')))")
log "scancel ${job}_0 while it trains $trial"
scancel "${job}_0"
wait_for 60 "task 0 to leave the queue" bash -c "! squeue -h -j ${job}_0 -o %i | grep -q ."
grep -q "giving back running trials" "$work/worker-${job}_0.out" || fail "task 0's worker did not give its trial back: $(cat "$work/worker-${job}_0.out")"

wait_for 180 "the sweep to finish" bash -c \
    "'$bin' status --coordinator '$address' --sweep slurm --json | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if all(t[\"status\"] in (\"done\",\"failed\",\"cancelled\") for t in s[\"trials\"]) else 1)'"
status_json > "$work/final.json"
python3 - "$work/final.json" "$trial" <<'PY'
import json, sys
trials = json.load(open(sys.argv[1]))["trials"]
by_id = {t["trial_id"]: t for t in trials}
assert len(trials) == 4, trials
bad = [t for t in trials if t["status"] != "done"]
assert not bad, f"not done: {bad}"
assert all(t["failures"] == 0 for t in trials), f"a give-back counted as a failure: {trials}"
cancelled = by_id[sys.argv[2]]
assert cancelled["attempt"] == 2, f"the cancelled trial should have run twice: {cancelled}"
print(f"[slurm test] all 4 trials done; {sys.argv[2]} ran again as attempt 2 with 0 failures")
PY

# The remaining worker finds nothing more to lease and ends its task by itself.
wait_for 60 "task 1 to end on its own (--exit-when-idle)" bash -c "! squeue -h -j $job -o %i | grep -q ."
grep -q "nothing to lease; the worker exits" "$work/worker-${job}_1.out" || fail "task 1 did not exit when idle: $(tail -5 "$work/worker-${job}_1.out")"

# Results after the coordinator's final flush: one series per trial, of its final attempt only.
kill -TERM "${pids[3]}"
wait_for 20 "the coordinator to exit" bash -c "! kill -0 ${pids[3]}"
series=$("$bin" sql "SELECT trial_id, COUNT(DISTINCT attempt) AS attempts, COUNT(*) - COUNT(DISTINCT step) AS repeated_steps, MAX(step) AS last FROM progress WHERE measure = 'test_accuracy' GROUP BY trial_id ORDER BY trial_id" --data-dir "$work/data" --sweep slurm)
echo "$series"
trials_seen=$(grep -cE '^\| [0-9a-f]{16} +\| 1 +\| 0 +\| [0-9]+ +\|' <<<"$series" || true)
[[ "$trials_seen" -eq 4 ]] || fail "expected 4 trials, each with one attempt and no step twice in its test_accuracy series"
test -d "$work/data/superseded/slurm/$trial" || fail "the given-back attempt's rows were not moved to superseded/"
log "passed"
