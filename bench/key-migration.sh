#!/bin/bash
# How long a coordinator takes to open a million-trial store written before trials had
# integer keys (session 23, issue 14): the store is made by this build (coordinator +
# submit), its trials, attempts, compaction queue and progress buffer are rewritten in the
# old shape (half the trials with a completed attempt queued for compaction), and the
# coordinator is started again; its log names the seconds the keying took.
# Usage: cargo build -p groksweep && bench/key-migration.sh (GROKSWEEP=binary, WORK=scratch dir)
set -e
B=${GROKSWEEP:-target/debug/groksweep}
W=${WORK:-/tmp/key-migration}
rm -rf $W && mkdir -p $W
cat > $W/big.yaml <<'Y'
version: 1
name: big
families: transformer
axes:
  modulus: [3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43, 45, 47, 49, 51, 53, 55, 57, 59, 61, 63, 65, 67, 69, 71, 73, 75, 77, 79, 81, 83, 85, 87, 89, 91, 93, 95, 97, 99, 101]
  data_fraction: [0.3, 0.4, 0.5, 0.6]
  weight_decay: [0.1, 0.2, 0.3, 0.4, 0.5]
  seed: SEEDS
Y
python3 -c "import sys; s=open('$W/big.yaml').read().replace('SEEDS', '[' + ', '.join(str(i) for i in range(1000)) + ']'); open('$W/big.yaml','w').write(s)"
$B coordinator --listen 127.0.0.1:50777 --data-dir $W/data > $W/c1.log 2>&1 &
C=$!; sleep 3
$B submit $W/big.yaml --coordinator http://127.0.0.1:50777 2>&1 | tail -2
kill -TERM $C; wait $C || true
DB=$W/data/coordinator.sqlite python3 - <<'P'
import os, sqlite3
c = sqlite3.connect(os.environ['DB'])
print('trials', c.execute('select count(*) from trials').fetchone())
c.executescript("""
BEGIN;
ALTER TABLE trials RENAME TO trials_keyed; ALTER TABLE attempts RENAME TO attempts_keyed;
ALTER TABLE compaction_pending RENAME TO compaction_pending_keyed; ALTER TABLE progress_batches RENAME TO progress_batches_keyed;
DROP INDEX trials_by_status; DROP INDEX trials_by_sweep; DROP INDEX attempts_active; DROP INDEX progress_batches_by_key;
CREATE TABLE trials (trial_id TEXT PRIMARY KEY, sweep TEXT NOT NULL REFERENCES sweeps(name), seq INTEGER NOT NULL,
    params_json TEXT NOT NULL, status TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, failures INTEGER NOT NULL DEFAULT 0,
    worker_id TEXT, started_at_ms INTEGER, finished_at_ms INTEGER, last_epoch INTEGER, last_train_accuracy REAL,
    last_test_accuracy REAL, metrics_json TEXT, error TEXT);
CREATE INDEX trials_by_status ON trials(status, sweep, seq);
CREATE INDEX trials_by_sweep ON trials(sweep, seq);
CREATE TABLE attempts (trial_id TEXT NOT NULL, attempt INTEGER NOT NULL, worker_id TEXT NOT NULL, fencing_token INTEGER NOT NULL,
    state TEXT NOT NULL, started_at_ms INTEGER NOT NULL, deadline_ms INTEGER NOT NULL, ended_at_ms INTEGER, reason TEXT,
    PRIMARY KEY (trial_id, attempt));
CREATE INDEX attempts_active ON attempts(state, deadline_ms);
CREATE TABLE compaction_pending (trial_id TEXT NOT NULL, attempt INTEGER NOT NULL, PRIMARY KEY (trial_id, attempt));
CREATE TABLE progress_batches (batch_id INTEGER PRIMARY KEY AUTOINCREMENT, trial_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    kind TEXT NOT NULL, steps BLOB NOT NULL, through BLOB NOT NULL);
CREATE INDEX progress_batches_by_attempt ON progress_batches(trial_id, attempt, batch_id);
INSERT INTO trials SELECT trial_id, sweep, seq, params_json, status, attempt, failures, worker_id, started_at_ms,
     finished_at_ms, last_epoch, last_train_accuracy, last_test_accuracy, metrics_json, error FROM trials_keyed ORDER BY key;
-- Half the trials done, each with one completed attempt queued for compaction (what a half-run sweep leaves).
INSERT INTO attempts SELECT trial_id, 1, 'w', rowid, 'completed', 0, 0, 0, NULL FROM trials WHERE rowid % 2 = 0;
INSERT INTO compaction_pending SELECT trial_id, 1 FROM trials WHERE rowid % 2 = 0;
DROP TABLE trials_keyed; DROP TABLE attempts_keyed; DROP TABLE compaction_pending_keyed; DROP TABLE progress_batches_keyed;
COMMIT;
""")
c.execute('PRAGMA wal_checkpoint(TRUNCATE)')
print('old shape written')
P
$B coordinator --listen 127.0.0.1:50777 --data-dir $W/data > $W/c2.log 2>&1 &
C=$!
until grep -q "listening\|keyed" $W/c2.log; do sleep 0.2; done
sleep 2
kill -TERM $C; wait $C || true
grep -i "keyed\|listening" $W/c2.log | head -3
