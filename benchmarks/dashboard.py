"""How the dashboard holds up on a large run: a synthetic 100,000-candidate run on the
NAS-Bench-201 table, then the times a page load and a table page take.

    python benchmarks/dashboard.py                 # 100,000 candidates (about a minute in all)
    python benchmarks/dashboard.py --n 20000 --keep runs/big   # smaller, and keep the run

The run is written straight through the store API in large transactions (the driver would take
longer; what is measured here is the dashboard): random cells of the NB201 space, looked up in the
table (a cell drawn again is recorded as a duplicate of its first evaluation, as the driver
does), spread over four workers with start and finish times. Printed:

    load        the server reading the run (once, at start)
    first paint what the page needs before it draws: the page, its script and style, the run
                list, the summary and every finished point (JSON decoded, as the browser does)
    table page  one page of the trials table: a new sort (computed), then another page of it
    history, parallel   the two plots the page asks for after the first paint

Targets: first paint < 2 s, table page < 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build(run: Path, n: int, seed: int = 0) -> None:
    from nas import objectives as objmod
    from nas.runs import SearchConfig, objectives_meta, space_config
    from nas.space import load_space
    from nas.store import RunStore
    from nas.tabular import TabularEvaluator

    space = load_space("nb201")
    objectives = objmod.parse_objectives("accuracy,params")
    config = SearchConfig(space=space_config(space), data="nb201:cifar10", objectives=[o.name for o in objectives], strategy="random",
                          budget=n, workers=4, backend="process")
    table = TabularEvaluator("cifar10")
    rng = random.Random(seed)
    store = RunStore.create(run, {"config": config.to_dict(), "objectives": objectives_meta(objectives), "run_version": 1})
    store.set_meta("input_shape", list(space.input_shape))
    store.set_meta("classes", space.classes)
    first: dict[str, int] = {}
    metrics_of: dict[int, dict] = {}
    times = []
    clock = [1.7e9] * 4
    store.batch = True  # one transaction for all (the driver commits fast evaluations in batches too)
    for cid in range(1, n + 1):
        arch = space.sample(rng)
        key = arch.key
        twin = first.get(key)
        w = cid % 4
        if twin is None:
            got = store.add(key, dict(arch), generation=cid // 50)
            assert got == cid
            store.start(cid, f"process:{w}")
            metrics = table.evaluate(space, arch).metrics
            metrics_of[cid] = metrics
            first[key] = cid
            store.finish(cid, "complete", metrics=metrics, objectives=[o.value(metrics, arch) for o in objectives])
            took = rng.uniform(0.5, 3.0)
            times.append((clock[w], clock[w] + took, f"process:{w}", cid))
            clock[w] += took
        else:
            metrics = metrics_of[twin]
            got = store.add_finished(key, dict(arch), "complete", generation=cid // 50, metrics=metrics,
                                     objectives=[o.value(metrics, arch) for o in objectives], violation=0.0, error=None, duplicate_of=twin)
            assert got == cid
    store.conn.executemany("UPDATE candidates SET started=?, finished=?, worker=? WHERE id=?", times)
    store.commit()
    store.batch = False
    store.set_meta("stopped", "budget")
    store.set_meta("elapsed", max(clock) - 1.7e9)
    store.close()
    print(f"built {n:,} candidates ({len(first):,} distinct cells) in {run}")


def get(base: str, path: str) -> bytes:
    with urllib.request.urlopen(base + path, timeout=60) as r:
        return r.read()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--keep", help="build the run here and keep it (default: a temporary directory)")
    args = ap.parse_args()
    from nas.dashboard import make_server

    tmp = None
    if args.keep:
        run = Path(args.keep)
    else:
        tmp = Path(tempfile.mkdtemp())
        run = tmp / "big"
    try:
        if not (run / "run.db").exists():
            t = time.perf_counter()
            build(run, args.n)
            print(f"build       {time.perf_counter() - t:6.2f} s")
        t = time.perf_counter()
        server = make_server(run, port=0)
        print(f"load        {time.perf_counter() - t:6.2f} s   (the server reads the run once, at start)")
        threading.Thread(target=server.serve_forever, daemon=True).start()
        base = f"http://127.0.0.1:{server.server_address[1]}"

        t = time.perf_counter()
        for path in ("/", "/app.js", "/app.css"):
            get(base, path)
        json.loads(get(base, "/api/runs"))
        summary = json.loads(get(base, "/api/summary"))
        points = json.loads(get(base, "/api/points?after=0"))["cols"]["id"]
        paint = time.perf_counter() - t
        print(f"first paint {paint:6.2f} s   ({summary['total']:,} candidates, {len(points):,} points, front {summary['front_size']})  target < 2 s")

        times = []
        for sort, page in (("-obj_accuracy", 0), ("-obj_accuracy", 7), ("params", 100), ("-id", 0)):
            t = time.perf_counter()
            d = json.loads(get(base, f"/api/trials?page={page}&size=50&sort={sort}"))
            times.append(time.perf_counter() - t)
            print(f"table page  {times[-1]:6.3f} s   (sort {sort}, page {page + 1} of {d['pages']}, {len(d['rows'])} rows)")
        t = time.perf_counter()
        d = json.loads(get(base, "/api/trials?page=0&size=50&sort=-val_accuracy&state=complete&q=conv_3x3"))
        times.append(time.perf_counter() - t)
        print(f"table page  {times[-1]:6.3f} s   (filtered: {d['total']:,} match 'conv_3x3')  target < 0.5 s")
        t = time.perf_counter()
        json.loads(get(base, "/api/history"))
        print(f"history     {time.perf_counter() - t:6.2f} s   (hypervolume over evaluations, after the first paint)")
        t = time.perf_counter()
        json.loads(get(base, "/api/parallel"))
        print(f"parallel    {time.perf_counter() - t:6.2f} s   (after the first paint)")
        t = time.perf_counter()
        json.loads(get(base, "/api/candidate?id=12345"))
        print(f"candidate   {time.perf_counter() - t:6.3f} s")
        server.shutdown()
        server.server_close()
        server.runs.close()  # type: ignore[attr-defined]
        ok = paint < 2.0 and max(times) < 0.5
        print("ok" if ok else "SLOWER THAN THE TARGETS")
        return 0 if ok else 1
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
