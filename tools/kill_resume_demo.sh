#!/usr/bin/env bash
# Kill -9 a seeded real-training search five times (after every second completed candidate plus
# a random 0-3 s, so kills land mid-training), resume it each time, and compare the finished run
# with an uninterrupted run of the same seed: same candidates, same metrics (timings aside).
#   tools/kill_resume_demo.sh [extra nas search flags]      (about 3-5 minutes on a 2-core CPU)
set -u
work=$(mktemp -d)
cd "$work"
ARGS="--space cnn --data digits --budget 12 --epochs 3 --seed 5 --no-progress $*"
nas search $ARGS --run straight > straight.out 2>&1 || { cat straight.out; exit 1; }
nas search $ARGS --run killed > killed.out 2>&1 &
pid=$!
count() { sqlite3 killed/run.db "select count(*) from candidates where state='$1'" 2>/dev/null || echo 0; }
for i in 1 2 3 4 5; do
  while kill -0 $pid 2>/dev/null && [ "$(count complete)" -lt $((2 * i)) ]; do sleep 0.5; done
  sleep "$(python3 -c 'import random; print(round(random.uniform(0, 3), 1))')"
  if kill -0 $pid 2>/dev/null; then
    kill -9 $pid; wait $pid 2>/dev/null
    echo "kill -9 number $i: $(count complete) complete, $(count running) running"
  fi
  nas resume killed --no-progress >> killed.out 2>&1 &
  pid=$!
done
wait $pid
python - <<'PY'
import json
from nas.store import RunStore

def rows(path):
    with RunStore.open(path) as store:
        return [(c.id, c.key, c.state, {k: v for k, v in c.metrics.items() if "seconds" not in k}, c.test) for c in store.candidates()]

a, b = rows("straight"), rows("killed")
print(f"candidates: uninterrupted {len(a)}, killed and resumed {len(b)}")
print("same ids, keys and states:", [r[:3] for r in a] == [r[:3] for r in b])
print("same metrics and test scores (timings aside):", a == b)
PY
echo "runs kept in $work"
