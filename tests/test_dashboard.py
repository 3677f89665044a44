"""nas dashboard: the JSON API, what it refuses to serve, its errors, and a real browser on a live search."""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

import nas
from nas.dashboard import make_server

from conftest import ROOT, python_env


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("dash") / "nb"
    nas.search("nb201", data="nb201:cifar10", strategy="random", budget=30, objectives="accuracy,params", run=run, progress=False)
    return run


@pytest.fixture
def server(table_run: Path) -> Iterator[tuple[str, int]]:
    srv = make_server(table_run, port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.server_address[0], srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        srv.runs.close()


def raw(addr: tuple[str, int], path: str, method: str = "GET") -> tuple[int, bytes]:
    """A request with the path sent exactly as given (no client-side normalisation)."""
    conn = http.client.HTTPConnection(*addr, timeout=30)
    conn.putrequest(method, path, skip_accept_encoding=True)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body


def get(addr: tuple[str, int], path: str) -> Any:
    status, body = raw(addr, path)
    assert status == 200, (path, status, body[:200])
    return json.loads(body)


def test_binds_localhost_by_default(server: tuple[str, int]) -> None:
    assert server[0] == "127.0.0.1"


def test_api_serves_the_run(server: tuple[str, int], table_run: Path) -> None:
    with nas.open_run(table_run) as run:
        cands = run.candidates
        front = {c.id for c in run.front}
    s = get(server, "/api/summary")
    assert s["total"] == len(cands) and s["state"] == "finished" and {f["id"] for f in s["front"]} == front
    assert s["pick"] in front
    pts = get(server, "/api/points?after=0")
    assert pts["start"] == 0 and pts["n"] == len(cands) and pts["cols"]["id"] == [c.id for c in cands]
    tail = get(server, f"/api/points?after={len(cands) - 3}")
    assert tail["cols"]["id"] == pts["cols"]["id"][-3:]
    assert pts["cols"]["o0"] == pytest.approx([c.objectives[0] for c in cands], abs=1e-6)
    page = get(server, "/api/trials?page=1&size=7&sort=-obj_accuracy")
    assert page["total"] == len(cands) and len(page["rows"]) == 7 and page["page"] == 1
    everything = sorted((c.objectives[0] for c in cands), reverse=True)
    assert [r["obj_accuracy"] for r in page["rows"]] == pytest.approx(everything[7:14])
    dups = get(server, "/api/trials?state=duplicate&size=500")
    assert dups["total"] == sum(c.duplicate_of is not None for c in cands)
    one = get(server, f"/api/trials?q={cands[0].key}")
    assert cands[0].id in [r["id"] for r in one["rows"]]
    c = get(server, f"/api/candidate?id={cands[0].id}")
    assert c["key"] == cands[0].key and c["export"].startswith("nas export") and f"--pick {cands[0].id}" in c["export"]
    hist = get(server, "/api/history")
    assert len(hist["x"]) == len(hist["hv"]) > 0
    par = get(server, "/api/parallel")
    assert par["axes"] and len(par["lines"]) == sum(c.state == "complete" for c in cands)


@pytest.mark.parametrize("path", [
    "/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2f..%2fetc%2fpasswd", "//etc/passwd",
    "/etc/passwd", "/app.js/../../../etc/passwd", "/static/../run.db", "/run.db", "/api/../run.db", "/api/summary/../../run.db",
    "/nas/dashboard.py", "/dashboard_static/app.js", "/api/summary?run=../nb", "/api/summary?run=/etc", "/api/summary?run=%2Fetc%2Fpasswd",
    "/api/candidate?id=../../etc/passwd", "http://127.0.0.1/../../etc/passwd",
])
def test_no_request_reaches_the_filesystem(server: tuple[str, int], path: str) -> None:
    status, body = raw(server, path)
    assert status in (400, 404), (path, status)
    assert b"root:" not in body and b"SQLite" not in body and b"import" not in body


def test_read_only(server: tuple[str, int], table_run: Path) -> None:
    before = (table_run / "run.db").read_bytes()
    for method in ("POST", "PUT", "DELETE"):
        status, _ = raw(server, "/api/summary", method)
        assert status == 405
    get(server, "/api/summary")
    assert (table_run / "run.db").read_bytes() == before


def cli(*args: str, timeout: int = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, env=python_env(), cwd=ROOT, timeout=timeout)


def test_errors_are_one_line(table_run: Path, tmp_path: Path) -> None:
    out = cli("dashboard", str(tmp_path / "missing"), "--port", "0")
    assert out.returncode == 2 and "no such run" in out.stderr and "Traceback" not in out.stderr, out.stderr
    newer = tmp_path / "newer"
    shutil.copytree(table_run, newer)
    with sqlite3.connect(newer / "run.db") as db:
        db.execute("UPDATE meta SET value='99' WHERE key='format_version'")
    out = cli("dashboard", str(newer), "--port", "0")
    assert out.returncode == 2 and "newer" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        out = cli("dashboard", str(table_run), "--port", str(port))
    assert out.returncode == 2 and "in use" in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    out = cli("dashboard", str(empty), "--port", "0")
    assert out.returncode == 2 and "no runs" in out.stderr


def test_directory_of_runs(table_run: Path, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copytree(table_run, runs / "a")
    shutil.copytree(table_run, runs / "z-newer")  # changed last, but written by a newer nas: the page opens "a"
    with sqlite3.connect(runs / "z-newer" / "run.db") as db:
        db.execute("UPDATE meta SET value='99' WHERE key='format_version'")
    srv = make_server(runs, port=0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        addr = srv.server_address[:2]
        listing = get(addr, "/api/runs")
        assert not listing["single"] and [r["name"] for r in listing["runs"]] == ["a", "z-newer"]
        assert listing["runs"][1]["state"] == "unreadable" and "newer" in listing["runs"][1]["error"]
        assert get(addr, "/api/summary?run=a")["run"] == "a" and get(addr, "/api/summary")["run"] == "a"
        assert raw(addr, "/api/summary?run=z-newer")[0] == 503
        assert raw(addr, "/api/summary?run=b")[0] == 404
    finally:
        srv.shutdown()
        srv.server_close()
        srv.runs.close()


# -- a real browser on a live search -----------------------------------------------------------------
def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def artifacts_dir() -> Path:
    d = Path(os.environ.get("CI_ARTIFACTS") or ROOT / "tests" / "artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


def browse(chromium: str, url: str, profile: Path, *extra: str, budget_ms: int = 4000) -> str:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
             f"--virtual-time-budget={budget_ms}", "--window-size=1300,1500"]
    out = subprocess.run([chromium, *flags, *(extra or ("--dump-dom",)), url], capture_output=True, text=True, timeout=90)
    return out.stdout


def attr(dom: str, element_id: str, name: str) -> str | None:
    m = re.search(rf'<[^>]*id="{element_id}"[^>]*>', dom)
    if not m:
        return None
    a = re.search(rf'{name}="([^"]*)"', m.group(0))
    return a.group(1) if a else None


def _readable(run: Path) -> bool:
    try:
        conn = sqlite3.connect(f"file:{run / 'run.db'}?mode=ro", uri=True, timeout=0.2)
        try:
            return conn.execute("SELECT value FROM meta WHERE key='format_version'").fetchone() is not None
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return False


@pytest.mark.slow
def test_browser_follows_a_live_search(tmp_path: Path) -> None:
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    run = tmp_path / "live"
    search = subprocess.Popen([sys.executable, "-m", "nas.cli", "search", "--space", "mlp", "--data", "digits", "--budget", "6",
                               "--epochs", "6", "--objectives", "accuracy,params", "--run", str(run), "--no-progress"],
                              env=python_env(OMP_NUM_THREADS="1"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = None
    try:
        deadline = time.time() + 60
        while not (run / "run.db").exists() and time.time() < deadline:
            time.sleep(0.05)
        # the search is held (SIGSTOP) until the page has been read once, so the first reading sees
        # it before its end however fast it runs and however slowly chromium starts; held where a
        # reader gets through (a process stopped inside one of SQLite's locked steps blocks readers
        # until it goes on: let it go on a moment and hold it again)
        for _ in range(500):
            os.kill(search.pid, signal.SIGSTOP)
            if _readable(run):
                break
            os.kill(search.pid, signal.SIGCONT)
            time.sleep(0.01)
        srv = make_server(run, port=0)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{srv.server_address[1]}/"
        counts = []
        dom = browse(chromium, url, tmp_path / "profile")
        n = attr(dom, "count", "data-count")
        counts.append(int(n) if n else -1)
        os.kill(search.pid, signal.SIGCONT)
        while time.time() < deadline + 300:
            dom = browse(chromium, url, tmp_path / "profile")
            n = attr(dom, "count", "data-count")
            counts.append(int(n) if n else -1)
            if search.poll() is not None and len(counts) >= 2:
                dom = browse(chromium, url, tmp_path / "profile")
                n = attr(dom, "count", "data-count")
                counts.append(int(n) if n else -1)
                break
            time.sleep(1.0)
        assert search.wait(timeout=300) == 0
        assert counts[-1] >= 6 and counts[-1] > min(counts), counts  # the page showed the count grow
        assert int(attr(dom, "front-plot", "data-points") or 0) >= 6 and int(attr(dom, "front-plot", "data-front") or 0) >= 1
        shot = artifacts_dir() / "dashboard-overview.png"
        browse(chromium, url, tmp_path / "profile", f"--screenshot={shot}")
        assert shot.exists() and shot.stat().st_size > 10_000
        table = browse(chromium, url + "#trials", tmp_path / "profile")
        assert attr(table, "trials-table", "data-total") == str(counts[-1])
        assert len(re.findall(r'<tr data-id="\d+"', table)) == counts[-1]
        cand = get(srv.server_address[:2], "/api/summary")["front"][0]["id"]
        page = browse(chromium, url + f"#candidate/{cand}", tmp_path / "profile")
        assert f"Candidate #{cand}" in page
        assert int(attr(page, "curve-plot", "data-epochs") or 0) >= 1 and page.count('class="curve-line"') >= 2
        browse(chromium, url + f"#candidate/{cand}", tmp_path / "profile", f"--screenshot={artifacts_dir() / 'dashboard-candidate.png'}")
    finally:
        if search.poll() is None:
            os.kill(search.pid, signal.SIGCONT)
            search.kill()
            search.wait(timeout=30)
        if srv is not None:
            srv.shutdown()
            srv.server_close()
            srv.runs.close()


def test_points_after_any_offset(table_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nas.dashboard as dash

    monkeypatch.setattr(dash, "POINT_BLOCK", 4)  # blocks of 4: every way an offset falls against them
    view = dash.RunView(table_run, "nb")
    try:
        everything = json.loads(view.points_after(0))
        assert everything["cols"]["id"] == [c.id for c in view.store.candidates()]
        n = everything["n"]
        assert all(len(col) == n for col in everything["cols"].values()) and {"o0", "o1", "acc", "start", "worker"} <= set(everything["cols"])
        for after in range(n + 2):
            got = json.loads(view.points_after(after))
            assert got["start"] == min(after, n) and got["n"] == max(0, n - after)
            assert got["cols"] == {k: v[after:] for k, v in everything["cols"].items()}
    finally:
        view.close()
