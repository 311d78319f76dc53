// dynkv dashboard: polls /admin/overview (every member's summary, gathered
// by the node serving this page) and /admin/pbs, and draws them with plain
// DOM and hand-written SVG. No framework, no network access beyond this
// node. Every state is written out in text (▲ up / ▼ down, numbers in
// tables); colours only repeat it.
"use strict";

const OVERVIEW_EVERY_MS = 2000;
const PBS_EVERY_MS = 10000;
const PBS_T_MS = 10;
const SVG = "http://www.w3.org/2000/svg";

const $ = (id) => document.getElementById(id);

// An element with attributes and children (strings become text nodes).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    // Through the CSS object model: the page's Content-Security-Policy
    // refuses style attributes.
    if (k === "style") e.style.cssText = v;
    else e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function num(v, digits) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  return Number(v).toLocaleString("en-US", { maximumFractionDigits: digits ?? 1 });
}

function age(unixMs, nowMs) {
  if (!unixMs) return "–";
  const s = Math.max(0, Math.round((nowMs - unixMs) / 1000));
  if (s < 120) return s + "s";
  if (s < 7200) return Math.round(s / 60) + "m";
  return Math.round(s / 3600) + "h";
}

function duration(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 120) return s + " s";
  if (s < 7200) return Math.floor(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store", credentials: "same-origin" });
  let body = null;
  try { body = await r.json(); } catch (_) { body = null; }
  return { status: r.status, body };
}

// --- members -------------------------------------------------------------

function memberState(m) {
  return m.up && m.reachable ? "up" : "down";
}

function drawMembers(ov) {
  const box = $("member-cards");
  box.replaceChildren();
  for (const m of ov.members) {
    const st = memberState(m);
    const s = m.summary;
    const rows = [["address", m.addr || "–"]];
    let why = null;
    if (st === "down") {
      why = !m.up ? "failure detector: down" : "no answer: " + (m.error || "unknown");
    } else if (m.error) {
      why = m.error;
    }
    if (why) rows.push(["why", why]);
    if (s) {
      const pct = s.inflight_capacity ? (100 * s.inflight) / s.inflight_capacity : 0;
      rows.push(["uptime", duration(s.uptime_ms)]);
      const total = s.ops.reduce((a, o) => a + o.rate, 0);
      rows.push(["requests", num(total, 1) + " /s"]);
      rows.push(["in flight", el("span", {}, `${s.inflight} of ${s.inflight_capacity}`,
        el("div", { class: "bar", role: "img", "aria-label": `${num(pct, 1)} % of the bulkhead` },
          el("span", { style: `width:${Math.min(100, pct)}%` })))]);
      rows.push(["refused", num(s.overloaded, 0) + " (bulkhead full)"]);
      const hints = s.hints.reduce((a, h) => a + h.count, 0);
      rows.push(["hints held", num(hints, 0)]);
    }
    const dl = el("dl", {}, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
    const label = st === "up" ? "▲ up" : "▼ down";
    box.append(el("article", { class: "node", "data-node": m.id, "data-state": st },
      el("h3", {}, el("span", {}, m.id + (m.self ? " (this node)" : "")),
        el("span", { class: "state" }, label)),
      dl));
  }
}

// --- requests ------------------------------------------------------------

function drawOps(ov) {
  const body = $("ops").tBodies[0];
  body.replaceChildren();
  let windowMs = 0;
  for (const m of ov.members) {
    const s = m.summary;
    if (!s) {
      body.append(el("tr", {}, el("td", {}, m.id), el("td", { colspan: 6 }, "no summary (" + (m.error || "down") + ")")));
      continue;
    }
    windowMs = Math.max(windowMs, s.window_ms);
    if (s.ops.length === 0) {
      body.append(el("tr", {}, el("td", {}, m.id), el("td", { colspan: 6 }, "no requests yet")));
    }
    for (const o of s.ops) {
      body.append(el("tr", { "data-node": m.id, "data-op": o.op },
        el("td", {}, m.id), el("td", {}, o.op),
        el("td", {}, num(o.rate, 1)),
        el("td", {}, o.requests ? num(o.p50_ms, 2) : "–"),
        el("td", {}, o.requests ? num(o.p99_ms, 2) : "–"),
        el("td", { class: o.errors ? "bad" : null }, num(o.errors, 0)),
        el("td", {}, num(o.client_errors, 0))));
    }
  }
  if (windowMs) $("window").textContent = duration(windowMs);
}

// --- ring ----------------------------------------------------------------

function drawRing(ov) {
  const owners = ov.ring.owners;
  const next = ov.ring.next_owners;
  const ids = ov.members.map((m) => m.id);
  const cls = (id) => "o" + (Math.max(0, ids.indexOf(id)) % 8);
  const counts = {};
  owners.forEach((o) => { counts[o] = (counts[o] || 0) + 1; });
  $("ring-legend").replaceChildren(...ids.map((id) =>
    el("span", {}, el("span", { class: "cell swatch " + cls(id) }, id.replace(/^\D+/, "") || id),
      ` ${id}: ${counts[id] || 0} partitions`)));
  const moving = new Set();
  const transfers = (ov.transfers && ov.transfers.transfers) || [];
  for (const t of transfers) if (!t.complete) moving.add(t.partition);
  const grid = $("ring-grid");
  grid.replaceChildren();
  owners.forEach((o, p) => {
    const to = next ? next[p] : o;
    const isMoving = to !== o || moving.has(p);
    const short = (id) => id.replace(/^\D+/, "") || id;
    const label = isMoving && to !== o ? `${short(o)}→${short(to)}` : short(o);
    grid.append(el("div", {
      class: "cell " + cls(o) + (isMoving ? " moving" : ""),
      title: `partition ${p}: ${o}` + (isMoving ? ` → ${to}` : ""),
      "data-partition": p,
    }, label));
  });
  const pending = transfers.filter((t) => !t.complete).length;
  $("transfers").textContent = ov.ring.next_owners || pending
    ? `A membership change is under way: ${pending} of ${transfers.length} transfers pending.`
    : `${ov.ring.partitions} partitions, N=${ov.n_val}; no transfer pending.`;
}

// --- healing -------------------------------------------------------------

function drawHealing(ov) {
  const body = $("heal").tBodies[0];
  body.replaceChildren();
  const aae = $("aae");
  aae.replaceChildren();
  const now = ov.at_unix_ms;
  for (const m of ov.members) {
    const s = m.summary;
    if (!s) {
      body.append(el("tr", {}, el("td", {}, m.id), el("td", { colspan: 5 }, "no summary")));
      continue;
    }
    const hints = s.hints.length ? s.hints.map((h) => `${h.owner}: ${h.count}`).join(", ") : "none";
    const rr = s.read_repairs.length ? s.read_repairs.map((c) => `${c.label} ${c.count}`).join(", ") : "0";
    const qf = s.quorum_failures.length ? s.quorum_failures.map((c) => `${c.label} ${c.count}`).join(", ") : "0";
    body.append(el("tr", { "data-node": m.id }, el("td", {}, m.id), el("td", {}, hints), el("td", {}, rr),
      el("td", {}, num(s.aae_exchanges, 0)), el("td", {}, num(s.aae_keys_repaired, 0)), el("td", {}, qf)));
    const cells = s.aae_partitions.map((p) => {
      const secs = (now - p.last_exchange_unix_ms) / 1000;
      return el("div", {
        class: "cell " + (secs < 120 ? "fresh" : "stale"),
        title: `partition ${p.partition}: last exchange with ${p.last_peer} ${age(p.last_exchange_unix_ms, now)} ago, ${p.exchanges} exchanges, ${p.keys_repaired} keys repaired`,
      }, `${p.partition}: ${age(p.last_exchange_unix_ms, now)}`);
    });
    aae.append(el("div", { class: "aae-row" }, el("b", {}, m.id),
      cells.length ? el("div", { class: "grid wide" }, cells)
        : el("span", {}, " – no exchange yet")));
  }
}

// --- siblings ------------------------------------------------------------

function siblingLabel(buckets, i) {
  const le = buckets[i].le;
  const prev = i > 0 ? buckets[i - 1].le : 0;
  if (le === null) return `>${prev}`;
  if (le - prev <= 1) return String(le);
  return `${prev + 1}–${le}`;
}

function drawSiblings(ov) {
  const box = $("sibling-chart");
  const summaries = ov.members.map((m) => m.summary).filter(Boolean);
  const first = summaries.find((s) => s.siblings.length);
  if (!first) { box.replaceChildren(el("p", {}, "no reads yet")); return; }
  const buckets = first.siblings.map((b, i) => ({ label: siblingLabel(first.siblings, i), count: 0 }));
  for (const s of summaries) s.siblings.forEach((b, i) => { if (buckets[i]) buckets[i].count += b.count; });
  const total = buckets.reduce((a, b) => a + b.count, 0);
  const W = 480, H = 200, L = 40, B = 30, T = 16;
  const bw = (W - L - 10) / buckets.length;
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "sibling counts per read" });
  g.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - 5, y2: H - B }));
  buckets.forEach((b, i) => {
    const h = ((H - B - T) * b.count) / max;
    const x = L + i * bw + 4;
    g.append(svg("rect", { class: "barrect", x, y: H - B - h, width: bw - 8, height: Math.max(h, 0) }));
    const pct = total ? (100 * b.count) / total : 0;
    g.append(svg("text", { x: x + (bw - 8) / 2, y: H - B - h - 3, "text-anchor": "middle" }, `${num(b.count, 0)} (${num(pct, 1)}%)`));
    g.append(svg("text", { x: x + (bw - 8) / 2, y: H - B + 14, "text-anchor": "middle" }, b.label));
  });
  g.append(svg("text", { x: W / 2, y: H - 2, "text-anchor": "middle" }, "siblings per read"));
  box.replaceChildren(g);
}

// --- PBS -----------------------------------------------------------------

// Dash patterns and marker shapes tell the curves apart without colour.
const DASHES = ["", "6 3", "2 3", "10 3 2 3", "1 5", "12 6", "4 2 1 2", "8 2", "3 6"];
const COLOURS = ["#2d5fb4", "#b3261e", "#1f7a3a", "#8a5a00", "#7b3fa0", "#336b73", "#5b6475", "#9c4a1a", "#1d2330"];

function pbsState(state, msg) {
  $("pbs").setAttribute("data-pbs-state", state);
  $("pbs-msg").textContent = msg;
}

async function refreshPbs(n) {
  $("pbs-n").textContent = n;
  const pairs = [];
  for (let r = 1; r <= n; r++) for (let w = 1; w <= n; w++) pairs.push([r, w]);
  let results;
  try {
    results = await Promise.all(pairs.map(([r, w]) => getJson(`/admin/pbs?n=${n}&r=${r}&w=${w}&t_ms=${PBS_T_MS}`)));
  } catch (e) {
    pbsState("error", "PBS unavailable: " + e);
    return;
  }
  const curves = [];
  results.forEach((res, i) => {
    if (res.status === 200 && res.body && Array.isArray(res.body.curve) && res.body.curve.length) {
      curves.push({ r: pairs[i][0], w: pairs[i][1], body: res.body });
    }
  });
  if (!curves.length) {
    const codes = results.map((r) => r.status);
    if (codes.every((c) => c === 404 || c === 503)) {
      pbsState("waiting", codes.includes(503) ? "waiting for traffic (no latencies measured yet)" : "waiting for traffic (this node measures no latencies yet)");
    } else {
      const bad = results.find((r) => r.status !== 200);
      pbsState("error", "PBS unavailable: " + ((bad && bad.body && bad.body.error) || "status " + (bad ? bad.status : "?")));
    }
    $("pbs-chart").replaceChildren();
    $("pbs-table").tBodies[0].replaceChildren();
    return;
  }
  pbsState("curves", "");
  drawPbs(curves);
}

function drawPbs(curves) {
  const W = 560, H = 280, L = 48, R = 24, T = 12, B = 40;
  const ts = curves[0].body.curve.map((p) => p.t_ms);
  const tMax = Math.max(...ts, 1);
  // Log axis in t; t=0 sits at the left edge, one decade left of the
  // smallest positive t.
  const positive = ts.filter((t) => t > 0);
  const tMin = positive.length ? Math.min(...positive) / 10 : 0.1;
  const xOf = (t) => L + ((W - L - R) * (Math.log10(Math.max(t, tMin)) - Math.log10(tMin))) / (Math.log10(tMax) - Math.log10(tMin) || 1);
  let pMin = 1;
  for (const c of curves) for (const p of c.body.curve) pMin = Math.min(pMin, p.probability);
  pMin = Math.max(0, Math.floor(pMin * 20) / 20 - 0.05);
  if (pMin > 0.9) pMin = 0.9;
  const yOf = (p) => T + ((H - T - B) * (1 - p)) / (1 - pMin || 1);
  const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "probability of a fresh read against time since the write" });
  for (let k = 0; k <= 4; k++) {
    const p = pMin + ((1 - pMin) * k) / 4;
    g.append(svg("line", { class: "gridline", x1: L, x2: W - R, y1: yOf(p), y2: yOf(p) }));
    g.append(svg("text", { x: L - 4, y: yOf(p) + 4, "text-anchor": "end" }, num(p, 2)));
  }
  for (const t of ts) {
    g.append(svg("text", { x: xOf(t), y: H - B + 14, "text-anchor": "middle" }, t === 0 ? "0" : t >= 1000 ? `${t / 1000}s` : String(t)));
  }
  g.append(svg("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  g.append(svg("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }));
  g.append(svg("line", { class: "target", x1: L, x2: W - R, y1: yOf(0.999), y2: yOf(0.999) }));
  g.append(svg("text", { x: L + 4, y: yOf(0.999) + 12, "text-anchor": "start" }, "99.9 %"));
  g.append(svg("text", { x: (L + W) / 2, y: H - 6, "text-anchor": "middle" }, "t since the write was acknowledged (ms, log scale)"));
  const body = $("pbs-table").tBodies[0];
  body.replaceChildren();
  curves.forEach((c, i) => {
    const pts = c.body.curve.map((p) => `${xOf(p.t_ms).toFixed(1)},${yOf(p.probability).toFixed(1)}`);
    const colour = COLOURS[i % COLOURS.length];
    const path = svg("path", {
      class: "curve", d: "M" + pts.join("L"), stroke: colour,
      "stroke-dasharray": DASHES[i % DASHES.length], "data-r": c.r, "data-w": c.w,
    });
    path.append(svg("title", {}, `R=${c.r} W=${c.w}`));
    g.append(path);
    const at0 = c.body.curve.find((p) => p.t_ms === 0);
    // The curve's line as a sample, so the table is its legend.
    const sample = svg("svg", { width: 44, height: 10, viewBox: "0 0 44 10", "aria-hidden": "true", class: "sample" });
    sample.append(svg("line", { x1: 0, y1: 5, x2: 44, y2: 5, stroke: colour, "stroke-width": 2, "stroke-dasharray": DASHES[i % DASHES.length] }));
    body.append(el("tr", { "data-r": c.r, "data-w": c.w },
      el("td", {}, sample, ` R=${c.r} W=${c.w}`),
      el("td", {}, at0 ? num(at0.probability, 4) : "–"),
      el("td", {}, num(c.body.probability, 4)),
      el("td", {}, c.body.t_999_ms === null || c.body.t_999_ms === undefined ? "–" : num(c.body.t_999_ms, 1) + " ms")));
  });
  $("pbs-chart").replaceChildren(g);
}

// --- polling -------------------------------------------------------------

let lastN = 0;
let pbsTimer = null;

function pbsLoop() {
  const go = async () => {
    if (lastN > 0) {
      try { await refreshPbs(lastN); } catch (e) { pbsState("error", "PBS unavailable: " + e); }
    }
    pbsTimer = setTimeout(go, lastN > 0 ? PBS_EVERY_MS : 500);
  };
  go();
}

async function refreshOverview() {
  const status = $("status");
  try {
    const { status: code, body } = await getJson("/admin/overview");
    if (code !== 200 || !body) {
      throw new Error((body && body.error) || "status " + code);
    }
    document.querySelectorAll(".seen-by").forEach((e) => { e.textContent = body.node; });
    drawMembers(body);
    drawOps(body);
    drawRing(body);
    drawHealing(body);
    drawSiblings(body);
    const up = body.members.filter((m) => memberState(m) === "up").length;
    status.className = "";
    status.textContent = `${up} of ${body.members.length} members up, as ${body.node} sees them · updated ${new Date(body.at_unix_ms).toLocaleTimeString()}`;
    document.body.setAttribute("data-loaded", "true");
    lastN = body.effective_n || body.n_val;
  } catch (e) {
    status.className = "error";
    status.textContent = "cannot reach this node: " + e.message + " (retrying)";
  }
}

function overviewLoop() {
  const go = async () => {
    await refreshOverview();
    setTimeout(go, OVERVIEW_EVERY_MS);
  };
  go();
}

overviewLoop();
pbsLoop();
