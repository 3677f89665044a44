// nas dashboard: plain JavaScript, no library. Plots are drawn on canvas (scatter, parallel
// coordinates, timeline: many points) and SVG (lines). Data comes from the dashboard's JSON API;
// live updates fetch only what is new (points after the ones already held).
"use strict";

const S = {
  run: null, summary: null, points: [], live: true, timer: null, busy: false,
  hv: null, hvN: -1, pc: null, pcN: -1, lastTotal: -1,
  table: { page: 0, size: 50, sort: "-id", state: "", q: "" },
  view: "overview", cand: null, drawn: [],
};
const POLL_MS = 2000;
const COLORS = { front: "#2563eb", other: "#9ca3af", infeasible: "#d97706", pick: "#dc2626" };
const $ = (id) => document.getElementById(id);

function esc(s) {
  return String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}
function fmt(v, digits) {
  if (v == null || (typeof v === "number" && !isFinite(v))) return "-";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v) && Math.abs(v) >= 1000) return v.toLocaleString("en-US");
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return v.toExponential(2);
  return Number(v.toPrecision(digits || 4)).toString();
}
function human(v) {
  if (v == null) return "-";
  const units = [["T", 1e12], ["G", 1e9], ["M", 1e6], ["k", 1e3]];
  for (const [u, s] of units) if (Math.abs(v) >= s) return (v / s).toPrecision(3) + u;
  return fmt(v);
}
function secs(s) {
  if (s == null) return "-";
  if (s < 90) return s.toFixed(0) + " s";
  if (s < 5400) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}
function q(params) {
  const p = new URLSearchParams(params);
  if (S.run) p.set("run", S.run);
  return p.toString();
}
async function api(path, params) {
  const r = await fetch("/api/" + path + "?" + q(params || {}), { cache: "no-store" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// -- points: [id, state, feasible, duplicate, [objectives], val_accuracy, started, finished, worker]
const P = { id: 0, state: 1, feasible: 2, dup: 3, obj: 4, acc: 5, start: 6, end: 7, worker: 8 };

// the server sends columns (flat lists parse fast); the plots read rows
function fromColumns(got, m) {
  const c = got.cols, out = new Array(got.n);
  for (let i = 0; i < got.n; i++) {
    const o = new Array(m);
    for (let j = 0; j < m; j++) o[j] = c["o" + j][i];
    out[i] = [c.id[i], c.state[i], c.feasible[i], c.dup[i], o, c.acc[i], c.start[i], c.end[i], c.worker[i]];
  }
  return out;
}

// -- polling ------------------------------------------------------------------------------------------
async function tick() {
  if (S.busy) return;
  S.busy = true;
  try {
    const sum = await api("summary");
    S.summary = sum;
    const got = await api("points", { after: S.points.length });
    const rows = fromColumns(got, sum.objectives.length);
    if (got.start === S.points.length) for (const p of rows) S.points.push(p);
    else { S.points = rows; }
    renderHeader();
    if (S.view === "overview") await renderOverview();
    else if (S.view === "trials" && sum.total !== S.lastTotal) await loadTable();
    else if (S.view === "candidate" && S.cand && S.cand.state !== "complete" && S.cand.state !== "failed" && S.cand.state !== "infeasible") await loadCandidate(S.cand.id);
    S.lastTotal = sum.total;
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    $("updated").textContent = "update failed: " + e.message;
  } finally {
    S.busy = false;
  }
}
function schedule() {
  clearInterval(S.timer);
  S.timer = S.live ? setInterval(tick, POLL_MS) : null;
  $("pause").textContent = S.live ? "Pause" : "Resume live";
  $("pause").dataset.live = S.live ? "1" : "0";
}

// -- header and progress ------------------------------------------------------------------------------
function renderHeader() {
  const s = S.summary;
  $("run-name").textContent = s.space + " on " + s.data + " · " + s.strategy;
  const st = $("run-state");
  st.textContent = s.state + (s.pid ? " (pid " + s.pid + ")" : "") + (s.state !== "running" && s.stopped ? " · " + s.stopped : "");
  st.className = "badge " + s.state;
  document.title = "nas · " + s.run + " · " + s.total;
}
function renderProgress() {
  const s = S.summary, c = s.counts;
  $("count").textContent = s.total;
  $("count").dataset.count = s.total;
  $("evaluated").textContent = "(" + s.evaluated + (s.budget ? " of " + s.budget : "") + " evaluated)";
  $("bar-fill").style.width = s.budget ? Math.min(100, (100 * s.evaluated) / s.budget) + "%" : "0";
  $("counts").textContent = `${c.complete} complete · ${c.failed} failed · ${c.infeasible} infeasible · ${c.running} running · ${c.queued} queued · ${s.duplicates} answered from the store`;
  $("elapsed").textContent = "search time " + secs(s.elapsed_s) + (s.time_budget ? " of " + secs(s.time_budget) : "");
  $("running").innerHTML = s.running.map((r) =>
    `<div class="small"><a href="#candidate/${r.id}">#${r.id}</a> on ${esc(r.worker || "?")}: epoch ${r.epoch == null ? "-" : r.epoch}` +
    ` · ${secs(s.now - (r.since || s.now))} <span class="muted">${esc(r.summary).slice(0, 80)}</span></div>`).join("");
}

// -- overview -----------------------------------------------------------------------------------------
async function renderOverview() {
  renderProgress();
  setupAxes();
  drawFront();
  drawBest();
  drawTimeline();
  const n = S.summary.finished;
  if (S.summary.objectives.length > 1 && (S.hvN !== n) && (S.hvN < 0 || n - S.hvN >= Math.max(1, S.hvN / 50) || S.summary.state !== "running")) {
    S.hv = await api("history"); S.hvN = n;
  }
  drawHV();
  if (S.pcN !== n && (S.pcN < 0 || n - S.pcN >= Math.max(1, S.pcN / 20) || S.summary.state !== "running")) {
    S.pc = await api("parallel"); S.pcN = n;
  }
  drawParallel();
}

function setupAxes() {
  const objs = S.summary.objectives, xs = $("front-x"), ys = $("front-y");
  if (xs.options.length) return;
  const single = objs.length === 1;
  const opts = objs.map((o, i) => `<option value="${i}">${esc(o.name)} (${o.direction})</option>`).join("");
  xs.innerHTML = (single ? `<option value="-1">evaluation</option>` : "") + opts;
  ys.innerHTML = opts;
  if (single) { xs.value = "-1"; ys.value = "0"; }
  else { xs.value = String(objs.findIndex((o) => o.name !== "accuracy") >= 0 ? objs.findIndex((o) => o.name !== "accuracy") : 1); ys.value = String(Math.max(0, objs.findIndex((o) => o.name === "accuracy"))); if (xs.value === ys.value) ys.value = xs.value === "0" ? "1" : "0"; }
  xs.onchange = ys.onchange = () => drawFront();
  $("front-title").textContent = single ? objs[0].name + " by evaluation (one objective: the best is marked)" : "Pareto front";
}

function scale(lo, hi, a, b, log) {
  if (log) { lo = Math.log10(lo); hi = Math.log10(hi); }
  if (!(hi > lo)) { hi = lo + 1; lo = lo - 1; }
  const f = (v) => a + ((log ? Math.log10(v) : v) - lo) / (hi - lo) * (b - a);
  f.lo = lo; f.hi = hi; f.log = log;
  return f;
}
function ticks(f, n) {
  const out = [];
  if (f.log) { for (let e = Math.floor(f.lo); e <= Math.ceil(f.hi); e++) if (e >= f.lo - 1e-9 && e <= f.hi + 1e-9) out.push(Math.pow(10, e)); if (out.length >= 2) return out; }
  const lo = f.log ? Math.pow(10, f.lo) : f.lo, hi = f.log ? Math.pow(10, f.hi) : f.hi;
  const step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n || 1)));
  const err = ((hi - lo) / n) / step;
  const s = step * (err >= 7.5 ? 10 : err >= 3.5 ? 5 : err >= 1.5 ? 2 : 1);
  for (let v = Math.ceil(lo / s) * s; v <= hi + s * 1e-9; v += s) out.push(Number(v.toPrecision(12)));
  return out;
}
function valueOf(p, axis) { return axis < 0 ? p[P.id] : p[P.obj][axis]; }

function drawFront() {
  const cv = $("front-plot"), ctx = cv.getContext("2d");
  const W = cv.width, H = cv.height, L = 70, R = 14, T = 12, B = 40;
  ctx.clearRect(0, 0, W, H);
  const xa = Number($("front-x").value), ya = Number($("front-y").value);
  const objs = S.summary.objectives;
  const frontIds = new Set(S.summary.front.map((f) => f.id));
  const pick = S.summary.pick;
  const pts = S.points.filter((p) => (p[P.state] === 0 || p[P.state] === 2) && valueOf(p, xa) != null && valueOf(p, ya) != null);
  S.drawn = [];
  $("front-note").textContent = "";
  if (!pts.length) {
    ctx.fillStyle = "#6b7380"; ctx.font = "14px sans-serif"; ctx.fillText("no finished candidate yet", L + 10, H / 2);
    cv.dataset.points = "0"; cv.dataset.front = "0";
    return;
  }
  let xl = Infinity, xh = -Infinity, yl = Infinity, yh = -Infinity;
  for (const p of pts) { const x = valueOf(p, xa), y = valueOf(p, ya); if (x < xl) xl = x; if (x > xh) xh = x; if (y < yl) yl = y; if (y > yh) yh = y; }
  const logx = xa >= 0 && xl > 0 && xh / xl > 100, logy = ya >= 0 && yl > 0 && yh / yl > 100;
  const padx = logx ? 0 : (xh - xl) * 0.04, pady = logy ? 0 : (yh - yl) * 0.06;
  const fx = scale(logx ? xl / 1.2 : xl - padx, logx ? xh * 1.2 : xh + padx, L, W - R, logx);
  const fy = scale(logy ? yl / 1.2 : yl - pady, logy ? yh * 1.2 : yh + pady, H - B, T, logy);
  axes(ctx, fx, fy, L, W - R, T, H - B, xa < 0 ? "evaluation (candidate id)" : objs[xa].name, objs[ya].name);
  // dominated first, the front on top, the pick last
  let nfront = 0;
  const step = pts.length > 40000 ? 2 : 1;  // very large runs: every other dominated point (the front is always drawn)
  for (let i = 0; i < pts.length; i++) {
    const p = pts[i]; const isF = frontIds.has(p[P.id]);
    if (isF) continue;
    if (step > 1 && i % step) continue;
    const x = fx(valueOf(p, xa)), y = fy(valueOf(p, ya));
    ctx.fillStyle = p[P.feasible] ? COLORS.other : COLORS.infeasible;
    ctx.globalAlpha = pts.length > 5000 ? 0.35 : 0.8;
    if (pts.length > 5000) ctx.fillRect(x - 1.5, y - 1.5, 3, 3); else { ctx.beginPath(); ctx.arc(x, y, 3, 0, 7); ctx.fill(); }
    S.drawn.push([x, y, p]);
  }
  ctx.globalAlpha = 1;
  const fpts = pts.filter((p) => frontIds.has(p[P.id])).sort((a, b) => valueOf(a, xa) - valueOf(b, xa));
  if (objs.length > 1 && fpts.length > 1) {
    ctx.strokeStyle = COLORS.front; ctx.lineWidth = 1; ctx.beginPath();
    fpts.forEach((p, i) => { const x = fx(valueOf(p, xa)), y = fy(valueOf(p, ya)); if (i) ctx.lineTo(x, y); else ctx.moveTo(x, y); });
    ctx.stroke();
  }
  for (const p of fpts) {
    const x = fx(valueOf(p, xa)), y = fy(valueOf(p, ya));
    ctx.fillStyle = COLORS.front; ctx.beginPath(); ctx.arc(x, y, 4, 0, 7); ctx.fill(); nfront++;
    S.drawn.push([x, y, p]);
  }
  const pp = pts.find((p) => p[P.id] === pick);
  if (pp) {
    const x = fx(valueOf(pp, xa)), y = fy(valueOf(pp, ya));
    ctx.strokeStyle = COLORS.pick; ctx.lineWidth = 2; ctx.beginPath(); ctx.arc(x, y, 8, 0, 7); ctx.stroke();
    ctx.fillStyle = COLORS.pick; ctx.font = "bold 12px sans-serif"; ctx.fillText("pick #" + pick, x + 10, y - 8);
  }
  cv.dataset.points = String(pts.length); cv.dataset.front = String(nfront); cv.dataset.pick = pick == null ? "" : String(pick);
  if (step > 1) $("front-note").textContent = `${pts.length.toLocaleString()} candidates: every other dominated one drawn, every front member drawn`;
}

function axes(ctx, fx, fy, x0, x1, y0, y1, xlabel, ylabel) {
  ctx.strokeStyle = "#d1d5db"; ctx.fillStyle = "#6b7380"; ctx.font = "11px sans-serif"; ctx.lineWidth = 1;
  ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x0, y1); ctx.lineTo(x1, y1); ctx.stroke();
  ctx.textAlign = "center";
  for (const t of ticks(fx, 6)) { const x = fx(t); if (x < x0 - 1 || x > x1 + 1) continue; ctx.fillText(human(t), x, y1 + 14); ctx.beginPath(); ctx.moveTo(x, y1); ctx.lineTo(x, y1 + 4); ctx.stroke(); }
  ctx.textAlign = "right";
  for (const t of ticks(fy, 5)) { const y = fy(t); if (y < y0 - 1 || y > y1 + 1) continue; ctx.fillText(human(t), x0 - 6, y + 4); }
  ctx.textAlign = "center"; ctx.fillText(xlabel, (x0 + x1) / 2, y1 + 32);
  ctx.save(); ctx.translate(14, (y0 + y1) / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(ylabel, 0, 0); ctx.restore();
  ctx.textAlign = "left";
}

function hoverFront(ev) {
  const cv = $("front-plot"), tip = $("tooltip");
  const r = cv.getBoundingClientRect(), sx = cv.width / r.width, sy = cv.height / r.height;
  const mx = (ev.clientX - r.left) * sx, my = (ev.clientY - r.top) * sy;
  let best = null, bd = 100;
  for (const d of S.drawn) { const dd = (d[0] - mx) ** 2 + (d[1] - my) ** 2; if (dd < bd) { bd = dd; best = d; } }
  if (!best) { tip.hidden = true; cv.style.cursor = ""; return null; }
  const p = best[2], objs = S.summary.objectives;
  const f = S.summary.front.find((x) => x.id === p[P.id]);
  tip.textContent = `#${p[P.id]}${p[P.id] === S.summary.pick ? " (pick)" : ""}${f ? " · front" : ""}${p[P.dup] ? " · duplicate" : ""}\n` +
    objs.map((o, i) => `${o.name}: ${fmt(p[P.obj][i])}`).join("\n") + (f ? "\n" + f.summary : "") + "\nclick for details";
  tip.hidden = false;
  tip.style.left = Math.min(r.width - 200, best[0] / sx + 12) + "px";
  tip.style.top = (best[1] / sy + 12) + "px";
  cv.style.cursor = "pointer";
  return p;
}

function svgLine(svg, series, opts) {
  // series: [{x:[], y:[], color, label}]; draws axes and polylines into an SVG element
  const W = 520, H = 220, L = 56, R = 10, T = 10, B = 34;
  let xl = Infinity, xh = -Infinity, yl = Infinity, yh = -Infinity;
  for (const s of series) s.x.forEach((x, i) => { const y = s.y[i]; if (y == null) return; xl = Math.min(xl, x); xh = Math.max(xh, x); yl = Math.min(yl, y); yh = Math.max(yh, y); });
  if (!isFinite(xl)) { svg.innerHTML = `<text x="60" y="110" fill="#6b7380" font-size="13">${esc(opts.empty || "nothing yet")}</text>`; return 0; }
  if (opts.ylo != null) yl = Math.min(yl, opts.ylo);
  const pad = (yh - yl) * 0.06 || Math.abs(yh) * 0.1 || 1;
  const fx = scale(xl, xh, L, W - R, false), fy = scale(yl - pad, yh + pad, H - B, T, false);
  let out = `<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="#d1d5db"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="#d1d5db"/>`;
  for (const t of ticks(fx, 6)) out += `<text x="${fx(t)}" y="${H - B + 14}" font-size="11" fill="#6b7380" text-anchor="middle">${human(t)}</text>`;
  for (const t of ticks(fy, 5)) out += `<text x="${L - 6}" y="${fy(t) + 4}" font-size="11" fill="#6b7380" text-anchor="end">${fmt(t, 3)}</text>`;
  out += `<text x="${(L + W) / 2}" y="${H - 4}" font-size="11" fill="#6b7380" text-anchor="middle">${esc(opts.xlabel || "")}</text>`;
  let lines = 0;
  series.forEach((s, k) => {
    const pts = []; s.x.forEach((x, i) => { if (s.y[i] != null) pts.push(fx(x).toFixed(1) + "," + fy(s.y[i]).toFixed(1)); });
    if (!pts.length) return;
    out += `<polyline class="${s.cls || "line"}" fill="none" stroke="${s.color}" stroke-width="1.8" points="${pts.join(" ")}"><title>${esc(s.label)}</title></polyline>`;
    out += `<text x="${W - R - 4}" y="${T + 12 + 14 * k}" font-size="11" fill="${s.color}" text-anchor="end">${esc(s.label)}</text>`;
    lines++;
  });
  svg.innerHTML = out;
  return lines;
}

function drawBest() {
  const o = S.summary.objectives[0], x = [], y = [];
  let best = null, n = 0;
  const pts = S.points.slice().sort((a, b) => a[P.id] - b[P.id]);
  const every = Math.max(1, Math.floor(pts.length / 800));
  for (const p of pts) {
    n++;
    if (p[P.state] === 0 && p[P.feasible] && p[P.obj][0] != null) {
      const v = p[P.obj][0];
      if (best == null || (o.direction === "max" ? v > best : v < best)) best = v;
    }
    if (best != null && (n % every === 0 || n === pts.length)) { x.push(p[P.id]); y.push(best); }
  }
  $("best-title").textContent = "Best " + o.name + " so far";
  svgLine($("best-plot"), [{ x, y, color: COLORS.front, label: "best " + o.name, cls: "best-line" }], { xlabel: "candidate id", empty: "no feasible candidate yet" });
}
function drawHV() {
  const svg = $("hv-plot");
  if (S.summary.objectives.length < 2) { svg.innerHTML = `<text x="40" y="110" fill="#6b7380" font-size="13">one objective: no hypervolume</text>`; $("hv-note").textContent = ""; return; }
  if (!S.hv) return;
  svgLine(svg, [{ x: S.hv.x, y: S.hv.hv, color: "#7c3aed", label: "hypervolume", cls: "hv-line" }], { xlabel: "finished candidates", empty: "not defined yet (bounds fixed after the first feasible evaluations)" });
  $("hv-note").textContent = S.hv.rule || "";
}

function drawParallel() {
  const cv = $("parallel-plot"), ctx = cv.getContext("2d"), d = S.pc;
  const W = cv.width, H = cv.height, T = 78, B = 16, L = 30, R = 60;
  ctx.clearRect(0, 0, W, H);
  if (!d || !d.lines.length || !d.axes.length) { ctx.fillStyle = "#6b7380"; ctx.font = "14px sans-serif"; ctx.fillText(d && !d.axes.length ? "the space has no decisions with more than one value" : "no complete candidate yet", 30, H / 2); cv.dataset.lines = "0"; return; }
  const na = d.axes.length + 1, gap = (W - L - R) / (na - 1);
  const accs = d.lines.map((l) => l[1]).filter((a) => a != null);
  const alo = Math.min(...accs), ahi = Math.max(...accs);
  const fa = scale(alo, ahi > alo ? ahi : alo + 1e-9, H - B, T, false);
  const yOf = (k, v) => { const n = d.axes[k].values.length; return n <= 1 ? (T + H - B) / 2 : T + (H - B - T) * (1 - v / (n - 1)); };
  const color = (a) => { const t = a == null ? 0 : (a - alo) / ((ahi - alo) || 1); return `hsl(${220 - 200 * t},70%,${55 - 15 * t}%)`; };
  const order = d.lines.slice().sort((a, b) => a[2] - b[2] || (a[1] || 0) - (b[1] || 0));
  for (const l of order) {
    ctx.strokeStyle = l[2] ? "#111827" : color(l[1]); ctx.globalAlpha = l[2] ? 0.9 : 0.35; ctx.lineWidth = l[2] ? 1.6 : 1;
    ctx.beginPath(); let started = false;
    l[3].forEach((v, k) => { if (v == null) { started = false; return; } const x = L + k * gap, y = yOf(k, v); if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; } });
    if (l[1] != null && started) ctx.lineTo(L + (na - 1) * gap, fa(l[1]));
    ctx.stroke();
  }
  ctx.globalAlpha = 1; ctx.fillStyle = "#374151"; ctx.font = "10px sans-serif"; ctx.textAlign = "center";
  d.axes.forEach((a, k) => {
    const x = L + k * gap; ctx.strokeStyle = "#9ca3af"; ctx.beginPath(); ctx.moveTo(x, T); ctx.lineTo(x, H - B); ctx.stroke();
    const name = a.label.length > 24 ? "…" + a.label.slice(-23) : a.label;
    ctx.save(); ctx.translate(x, T - 14); ctx.rotate(-0.6); ctx.textAlign = "left"; ctx.fillText(name, 0, 0); ctx.restore();
    a.values.forEach((v, i) => { if (a.values.length <= 8 || i === 0 || i === a.values.length - 1) ctx.fillText(String(v).slice(0, 10), x, yOf(k, i) - 3); });
  });
  const xa = L + (na - 1) * gap; ctx.strokeStyle = "#111827"; ctx.beginPath(); ctx.moveTo(xa, T); ctx.lineTo(xa, H - B); ctx.stroke();
  ctx.fillText("val acc", xa, T - 8); ctx.textAlign = "left";
  for (const t of ticks(fa, 4)) ctx.fillText(fmt(t, 3), xa + 4, fa(t) + 3);
  cv.dataset.lines = String(d.lines.length);
  $("pc-note").textContent = `${d.shown} of ${d.n} finished (front in black${d.shown < d.n ? "; a sample of the rest" : ""})`;
}

function drawTimeline() {
  const cv = $("timeline-plot"), ctx = cv.getContext("2d"), s = S.summary;
  const workers = s.workers, nw = Math.max(1, workers.length);
  cv.height = Math.max(80, 30 + nw * 22);
  const W = cv.width, H = cv.height, L = 170, R = 10, T = 6, B = 22;
  ctx.clearRect(0, 0, W, H);
  const bars = S.points.filter((p) => p[P.start] != null && p[P.end] != null && !p[P.dup]);
  const running = s.running.filter((r) => r.since != null && s.t0 != null);
  if (!bars.length && !running.length) { ctx.fillStyle = "#6b7380"; ctx.font = "13px sans-serif"; ctx.fillText("nothing has run yet", L, H / 2); return; }
  let t0 = Infinity, t1 = -Infinity;
  for (const p of bars) { t0 = Math.min(t0, p[P.start]); t1 = Math.max(t1, p[P.end]); }
  const base = s.t0 || 0;
  for (const r of running) { t0 = Math.min(t0, r.since - base); t1 = Math.max(t1, s.now - base); }
  const fx = scale(0, Math.max(1e-3, t1 - t0), L, W - R, false);
  const rowH = (H - T - B) / nw;
  ctx.font = "11px sans-serif"; ctx.fillStyle = "#374151";
  workers.forEach((w, i) => ctx.fillText(w.length > 26 ? w.slice(0, 25) + "…" : w, 4, T + rowH * i + rowH / 2 + 4));
  const stateColor = ["#2563eb", "#dc2626", "#d97706"];
  // very many bars: merge those closer than a pixel in each row (what a pixel can show)
  const last = new Array(nw).fill(-1);
  let drawn = 0;
  for (const p of bars) {
    const w = Math.max(0, p[P.worker]), x0 = fx(p[P.start] - t0), x1 = Math.max(x0 + 1, fx(p[P.end] - t0));
    if (bars.length > 20000 && x1 <= last[w] + 0.5) continue;
    last[w] = x1;
    ctx.fillStyle = stateColor[p[P.state]] || "#9ca3af";
    ctx.fillRect(x0, T + rowH * w + 2, x1 - x0, rowH - 4); drawn++;
  }
  for (const r of running) {
    const w = Math.max(0, workers.indexOf(r.worker)), x0 = fx(r.since - base - t0), x1 = fx(s.now - base - t0);
    ctx.fillStyle = "#16a34a"; ctx.fillRect(x0, T + rowH * w + 2, Math.max(2, x1 - x0), rowH - 4);
  }
  ctx.fillStyle = "#6b7380"; ctx.textAlign = "center";
  for (const t of ticks(fx, 6)) ctx.fillText(secs(t), fx(t), H - 6);
  ctx.textAlign = "left";
  cv.dataset.bars = String(drawn);
  $("timeline-note").textContent = `${workers.length} worker${workers.length === 1 ? "" : "s"}; blue complete, red failed, orange infeasible, green running`;
}

// -- trials table ---------------------------------------------------------------------------------------
const LABELS = { id: "id", state: "state", val_accuracy: "val acc", test_accuracy: "test acc", params: "params", flops: "FLOPs", latency_ms: "latency ms", epochs: "epochs", seconds: "seconds", worker: "worker", source: "source", summary: "architecture", error: "error" };
async function loadTable() {
  const t = S.table;
  const d = await api("trials", { page: t.page, size: t.size, sort: t.sort, state: t.state, q: t.q });
  t.page = d.page;
  const front = new Set(d.front);
  const cols = d.columns;
  const thead = $("trials-table").tHead, tbody = $("trials-table").tBodies[0];
  const sortCol = t.sort.replace(/^-/, ""), desc = t.sort.startsWith("-");
  thead.innerHTML = "<tr>" + cols.map((c) => {
    const num = !["state", "worker", "source", "summary", "error"].includes(c);
    return `<th data-col="${c}" class="${num ? "num" : ""} ${c === sortCol ? "sorted" + (desc ? " desc" : "") : ""}">${esc(LABELS[c] || c.replace(/^obj_/, "") + " (obj)")}</th>`;
  }).join("") + "</tr>";
  tbody.innerHTML = d.rows.map((r) => `<tr data-id="${r.id}" class="${r.id === d.pick ? "pick" : ""} ${front.has(r.id) ? "front" : ""}">` + cols.map((c) => {
    const v = r[c];
    if (c === "state") return `<td class="state-${esc(v)}">${esc(v)}</td>`;
    if (c === "summary") return `<td class="arch">${esc(v)}</td>`;
    if (c === "worker" || c === "source" || c === "error") return `<td>${esc(v || "")}</td>`;
    if (c === "params" || c === "flops" || c === "obj_params" || c === "obj_flops") return `<td class="num">${human(v)}</td>`;
    return `<td class="num">${fmt(v)}</td>`;
  }).join("") + "</tr>").join("");
  $("t-pageinfo").textContent = `page ${d.page + 1} of ${d.pages} · ${d.total.toLocaleString()} of ${d.all.toLocaleString()} candidates`;
  $("trials-table").dataset.rows = String(d.rows.length);
  $("trials-table").dataset.total = String(d.total);
}

// -- candidate page -------------------------------------------------------------------------------------
async function loadCandidate(id) {
  let c;
  try { c = await api("candidate", { id }); } catch (e) { $("cand").innerHTML = `<p>candidate #${esc(id)}: ${esc(e.message)}</p>`; return; }
  S.cand = c;
  const kv = (o, pre) => Object.entries(o || {}).map(([k, v]) => `<dt>${esc((pre || "") + k)}</dt><dd>${esc(typeof v === "number" ? fmt(v, 6) : v)}</dd>`).join("");
  const link = (b) => `<a href="#candidate/${b.id}">#${b.id}</a> <span class="muted">${esc(b.state)} ${b.val_accuracy != null ? "acc " + fmt(b.val_accuracy) : ""}</span>`;
  $("cand").innerHTML = `
    <div class="card"><h2 id="cand-title">Candidate #${c.id} · ${esc(c.state)}${c.pick ? " · the pick" : ""}${c.in_front ? " · on the front" : ""}</h2>
      <div>${esc(c.summary)}</div>
      ${c.error ? `<p class="state-failed">${esc(c.error)}</p>` : ""}
      ${c.source ? `<p class="muted">${esc(c.source)}${c.duplicate_of != null ? ` (<a href="#candidate/${c.duplicate_of}">#${c.duplicate_of}</a>)` : ""}</p>` : ""}
      <p>export: <code id="export-cmd">${esc(c.export)}</code></p></div>
    <div class="cards">
      <div class="card half"><h2>Learning curve${c.curve_of !== c.id ? ` (of #${c.curve_of}, which it duplicates)` : ""}</h2><svg id="curve-plot" viewBox="0 0 520 220"></svg><svg id="curve-acc" viewBox="0 0 520 220"></svg></div>
      <div class="card half"><h2>Metrics</h2><dl class="kv">${kv(c.objectives, "objective ")}${kv(c.metrics)}${c.test ? kv(c.test) : ""}<dt>worker</dt><dd>${esc(c.worker || "-")}</dd><dt>generation</dt><dd>${c.generation}</dd><dt>key</dt><dd>${esc(c.key)}</dd></dl></div>
    </div>
    <div class="cards">
      <div class="card half"><h2>Parents</h2><div class="links" id="parents">${c.parents.map(link).join("<br>") || "<span class='muted'>none (sampled)</span>"}</div></div>
      <div class="card half"><h2>Children (${c.children_total})</h2><div class="links" id="children">${c.children.map(link).join("<br>") || "<span class='muted'>none</span>"}</div></div>
    </div>
    <div class="card"><h2>Architecture</h2><pre>${esc(c.decisions)}</pre><dl class="kv">${kv(c.arch)}</dl></div>`;
  const ep = c.curve.map((e) => e.epoch);
  const n = svgLine($("curve-plot"), [
    { x: ep, y: c.curve.map((e) => e.train_loss ?? null), color: "#dc2626", label: "train loss", cls: "curve-line" },
    { x: ep, y: c.curve.map((e) => e.val_loss ?? null), color: "#d97706", label: "val loss", cls: "curve-line" },
  ], { xlabel: "epoch", empty: c.state === "running" ? "waiting for the first epoch" : "no epochs recorded (a table lookup, or not trained)" });
  svgLine($("curve-acc"), [{ x: ep, y: c.curve.map((e) => e.val_accuracy ?? null), color: "#2563eb", label: "val accuracy", cls: "curve-line" }],
    { xlabel: "epoch", empty: "" });
  $("curve-plot").dataset.epochs = String(c.curve.length);
  $("curve-plot").dataset.lines = String(n);
}

// -- routing and setup ---------------------------------------------------------------------------------
async function route() {
  const h = location.hash.replace(/^#/, "") || "overview";
  const [view, arg] = h.split("/");
  S.view = view === "trials" || view === "candidate" ? view : "overview";
  for (const v of ["overview", "trials", "candidate"]) $("view-" + v).hidden = v !== S.view;
  $("nav-overview").className = S.view === "overview" ? "active" : "";
  $("nav-trials").className = S.view === "trials" ? "active" : "";
  if (!S.summary) return;
  if (S.view === "overview") await renderOverview();
  else if (S.view === "trials") await loadTable();
  else await loadCandidate(Number(arg));
}

async function init() {
  const runs = await api("runs");
  const sel = $("run-select");
  const params = new URLSearchParams(location.search);
  if (!runs.single && runs.runs.length) {
    sel.hidden = false;
    sel.innerHTML = runs.runs.map((r) => `<option value="${esc(r.name)}">${esc(r.name)} (${esc(r.state)})</option>`).join("");
    const latest = runs.runs.filter((r) => r.changed != null && r.state !== "unreadable").sort((a, b) => b.changed - a.changed)[0];
    S.run = params.get("run") || (latest ? latest.name : runs.runs[0].name);
    sel.value = S.run;
    sel.onchange = () => { location.search = "?run=" + encodeURIComponent(sel.value); };
  }
  $("pause").onclick = () => { S.live = !S.live; schedule(); if (S.live) tick(); };
  const cv = $("front-plot");
  cv.addEventListener("mousemove", hoverFront);
  cv.addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
  cv.addEventListener("click", (ev) => { const p = hoverFront(ev); if (p) location.hash = "candidate/" + p[P.id]; });
  const t = S.table;
  $("trials-table").tHead.addEventListener("click", (ev) => {
    const th = ev.target.closest("th"); if (!th) return;
    const c = th.dataset.col; t.sort = t.sort === "-" + c ? c : t.sort === c ? "-" + c : (["state", "worker", "source", "summary", "error"].includes(c) ? c : "-" + c);
    t.page = 0; loadTable();
  });
  $("trials-table").tBodies[0].addEventListener("click", (ev) => { const tr = ev.target.closest("tr"); if (tr) location.hash = "candidate/" + tr.dataset.id; });
  $("t-state").onchange = () => { t.state = $("t-state").value; t.page = 0; loadTable(); };
  let typing = null;
  $("t-q").oninput = () => { clearTimeout(typing); typing = setTimeout(() => { t.q = $("t-q").value.trim(); t.page = 0; loadTable(); }, 250); };
  $("t-size").onchange = () => { t.size = Number($("t-size").value); t.page = 0; loadTable(); };
  $("t-prev").onclick = () => { if (t.page > 0) { t.page--; loadTable(); } };
  $("t-next").onclick = () => { t.page++; loadTable(); };
  window.addEventListener("hashchange", route);
  await tick();
  await route();
  schedule();
}
init().catch((e) => { document.body.insertAdjacentHTML("afterbegin", `<p style="color:#dc2626;padding:8px">dashboard: ${esc(e.message)}</p>`); });
