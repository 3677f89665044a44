#!/usr/bin/env bash
# Kill -9 a seeded real-training search five times (after every second completed candidate plus
# a random 0-3 s, so kills land mid-training), resume it each time, and compare the finished run
# with an uninterrupted run of the same seed: same candidates, same metrics (timings aside).
# Exits non-zero when no kill landed or the runs differ.
#   tools/kill_resume_demo.sh [extra nas search flags]      (about 3-5 minutes on a 2-core CPU)
set -u
PY=${PYTHON:-python3}
fail() { echo "kill_resume_demo: $*" >&2; [ -n "${pid:-}" ] && kill -9 "$pid" 2>/dev/null; exit 2; }
"$PY" -c "import sqlite3, nas" || fail "$PY cannot import sqlite3 and nas (set PYTHON to the environment's python)"
command -v nas >/dev/null || fail "the nas command is not on PATH"
work=$(mktemp -d)
cd "$work"
ARGS="--space cnn --data digits --budget 12 --epochs 3 --seed 5 --no-progress $*"
nas search $ARGS --run straight > straight.out 2>&1 || { cat straight.out; exit 1; }
nas search $ARGS --run killed > killed.out 2>&1 &
pid=$!
# candidates in a state, read with Python's sqlite3 (read-only; 0 before the run exists)
count() {
  "$PY" - "$1" <<'PY'
import sqlite3, sys
from pathlib import Path
db = Path("killed/run.db")
if not db.exists():
    print(0)
else:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        print(conn.execute("SELECT COUNT(*) FROM candidates WHERE state=?", (sys.argv[1],)).fetchone()[0])
PY
}
kills=0
for i in 1 2 3 4 5; do
  while kill -0 $pid 2>/dev/null; do
    n=$(count complete) || fail "cannot count the run's candidates with $PY"
    [ "$n" -ge $((2 * i)) ] && break
    sleep 0.5
  done
  sleep "$("$PY" -c 'import random; print(round(random.uniform(0, 3), 1))')"
  if kill -0 $pid 2>/dev/null; then
    kill -9 $pid; wait $pid 2>/dev/null
    kills=$((kills + 1))
    echo "kill -9 number $i: $(count complete) complete, $(count running) running"
  fi
  nas resume killed --no-progress >> killed.out 2>&1 &
  pid=$!
done
wait $pid || { echo "the last resume failed:"; tail -5 killed.out; exit 1; }
if [ "$kills" -eq 0 ]; then
  echo "kill_resume_demo: no kill landed (the search finished first); nothing was tested" >&2
  exit 1
fi
"$PY" - <<'PY'
import sys
from nas.store import RunStore

def rows(path):
    with RunStore.open(path) as store:
        return [(c.id, c.key, c.state, {k: v for k, v in c.metrics.items() if "seconds" not in k}, c.test) for c in store.candidates()]

a, b = rows("straight"), rows("killed")
print(f"candidates: uninterrupted {len(a)}, killed and resumed {len(b)}")
same_ids = [r[:3] for r in a] == [r[:3] for r in b]
print("same ids, keys and states:", same_ids)
print("same metrics and test scores (timings aside):", a == b)
sys.exit(0 if same_ids and a == b else 1)
PY
status=$?
echo "$kills kills; runs kept in $work"
exit $status
