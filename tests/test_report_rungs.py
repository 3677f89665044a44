"""The rungs of a scheduled run in `nas report` and `nas status`: per rung how many candidates
reached it, the promotion cutoff and where it lies, and every candidate's rung history with why it
stopped, checked against the stored rung rows and a brute-force reading of them."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

import nas
from nas.cli import main
from nas.report import write_report
from nas.schedulers import describe_why, read_rungs
from nas.search import open_run, search


@pytest.fixture(scope="module")
def nb201_asha(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("rungs2") / "r"
    search(nas.load_space("nb201"), data="nb201:cifar10", objectives="accuracy,params", scheduler="asha", budget=40, run=run, progress=False)
    return run


@pytest.fixture(scope="module")
def digits_asha(tmp_path_factory) -> Path:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("rungs1") / "r"
    try:
        search("mlp", data="digits", objectives="accuracy", strategy="random", scheduler="asha", eta=2, budget=8,
               max_epochs=4, patience=None, run=run, progress=False, device="cpu")
    finally:
        torch.set_num_threads(threads)
    return run


def _rows(run: Path):
    store, config, _, _ = open_run(run)
    with store:
        return read_rungs(store), config


def _dominates(a, b) -> bool:
    """a and b are (accuracy, params): a at least as good in both and better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def _expected_summary(rows, eta: int, several: bool):
    """Per (bracket, rung), read off the rows by brute force: reached, finished, promoted, cutoff,
    and the cutoff's last candidate: the k-th by accuracy (one objective), or its front by
    counting dominance layers (several)."""
    out = {}
    keys = {(r.cid, r.rung) for r in rows}
    for b, k in sorted({(r.bracket, r.rung) for r in rows}):
        group = [r for r in rows if (r.bracket, r.rung) == (b, k)]
        done = [r for r in group if r.state in ("complete", "failed")]
        n_cut = len(done) // eta
        exp = {"epochs": group[0].epochs, "reached": len(group), "finished": len(done),
               "promoted": sum((r.cid, k + 1) in keys for r in group), "cutoff": n_cut}
        if not several:
            ranked = sorted((r for r in done if r.state == "complete"), key=lambda r: (-r.accuracy, r.cid))
            exp["last"] = (ranked[n_cut - 1].cid, ranked[n_cut - 1].accuracy) if n_cut else None
        else:
            pts = {r.cid: (r.accuracy, r.cheap[0]) for r in done if r.state == "complete"}
            layer, left, f = {}, dict(pts), 1
            while left:
                top = [c for c in left if not any(_dominates(left[o], left[c]) for o in left if o != c)]
                layer.update({c: f for c in top})
                for c in top:
                    del left[c]
                f += 1
            exp["layers"] = layer
        out[(b, k)] = exp
    return out


def _check(run: Path, capsys, several: bool) -> None:
    rows, config = _rows(run)
    assert rows and {r.rung for r in rows} >= {0, 1}, "the run promoted something"
    expected = _expected_summary(rows, config.eta, several)
    page = write_report(run)["html"].read_text(encoding="utf-8")
    assert "<h2>Rungs " in page
    section = page[page.index("<h2>Rungs "):page.index("<h2>Failures")]
    body = section[:section.index("</table>")]
    table = [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)] for tr in re.findall(r"<tr>(.*?)</tr>", body) if "<td" in tr]
    assert len(table) == len(expected)
    assert main(["status", str(run)]) == 0
    status = capsys.readouterr().out
    status_lines = status[status.index("\nrungs ("):].splitlines()
    top_epochs = max(r.epochs for r in rows)
    for cells, ((b, k), exp) in zip(table, sorted(expected.items())):
        top = exp["epochs"] == top_epochs  # each bracket's ladder ends at the maximum epochs
        assert [int(x) for x in cells[:7]] == [b, k, exp["epochs"], exp["reached"], exp["finished"], 0, exp["promoted"]]
        assert cells[7] == ("-" if top else str(exp["cutoff"]))
        last = cells[8]
        if top:
            assert last == "top rung" and exp["promoted"] == 0
        elif exp["cutoff"] == 0:
            assert last == "-"
        elif not several:
            cid, acc = exp["last"]
            assert last == f"#{cid} {acc:.4f}"
        else:
            m = re.fullmatch(r"#(\d+) (\S+) front (\d+)", last)
            assert m, last
            assert int(m.group(3)) == exp["layers"][int(m.group(1))]
            # the cut takes whole fronts while they fit: this one and the earlier ones fit (or it is a
            # first front wider than the cut), the next does not
            front, layers = int(m.group(3)), exp["layers"].values()
            assert front == 1 or sum(1 for f in layers if f <= front) <= exp["cutoff"]
            assert front == max(layers) or sum(1 for f in layers if f <= front + 1) > exp["cutoff"]
        # `nas status` shows the same row
        assert any(line.split()[:8] == cells[:8] and line.rstrip().endswith(last) for line in status_lines), (cells, status)
    # every trained candidate's rungs and why it went no further, as `nas status --candidate` says
    by: dict[int, list] = {}
    for r in rows:
        by.setdefault(r.cid, []).append(r)
    stopped = set()
    for cid, hist in by.items():
        m = re.search(rf'<tr id="rungs-{cid}"><td>{cid}</td><td>(\d+)</td><td class="l">(.*?)</td><td class="l">(.*?)</td></tr>', section)
        assert m, cid
        steps = html.unescape(m.group(2)).split(" \u2192 ")
        assert steps == [f"{h.epochs} ep {h.accuracy:.4f}" if h.state == "complete" else f"{h.epochs} ep {h.state}" for h in hist]
        why = hist[-1].why
        assert why, f"#{cid}: a finished run says why every candidate stopped"
        assert html.unescape(m.group(3)) == describe_why(why)
        stopped.add(why["stopped"])
        assert main(["status", str(run), "--candidate", str(cid)]) == 0
        told = capsys.readouterr().out.splitlines()
        assert len(told) == len(hist) and told[-1].endswith(describe_why(why))
        assert main(["status", str(run), "--candidate", str(cid), "--json"]) == 0
        assert [h["rung"] for h in json.loads(capsys.readouterr().out)["rungs"]] == [h.rung for h in hist]
        if why["stopped"] == "not promoted":  # the reason holds: it ranks below the cutoff, or its front would not fit
            assert why["cutoff"] == why["of"] // config.eta
            assert why["rank"] > why["cutoff"] or (several and why["front"] > 1 and why["through_front"] > why["cutoff"]), why
    assert "not promoted" in stopped


def test_report_and_status_show_the_rungs_of_a_two_objective_table_run(nb201_asha, capsys):
    _check(nb201_asha, capsys, several=True)


def test_report_and_status_show_the_rungs_of_a_trained_run(digits_asha, capsys):
    _check(digits_asha, capsys, several=False)
    rows, _ = _rows(digits_asha)
    assert {r.epochs for r in rows} == {1, 2, 4}


def test_a_run_without_a_scheduler_has_no_rung_section(tmp_path):
    run = tmp_path / "r"
    search(nas.load_space("nb201"), data="nb201:cifar10", objectives="accuracy", budget=10, run=run, progress=False)
    assert "<h2>Rungs" not in write_report(run)["html"].read_text(encoding="utf-8")
