// Coolshift live console: polls this process's API and draws plan against actual.
// Plain JS, nothing loaded from elsewhere; every value is set as text (never as HTML).
"use strict";

const POLL_MS = 2000;
const COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
const SVG_NS = "http://www.w3.org/2000/svg";

function $(id) { return document.getElementById(id); }
function text(id, value) { $(id).textContent = value; }
function fmt(v, digits) {
  return (typeof v === "number" && isFinite(v)) ? v.toFixed(digits === undefined ? 2 : digits) : "-";
}
async function getJSON(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(path + ": HTTP " + r.status);
  return r.json();
}
function el(tag, cls, content) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (content !== undefined) e.textContent = content;
  return e;
}

function showStatus(st) {
  text("site", st.site ? "- " + st.site : "");
  const s = $("state");
  s.textContent = st.state || "unknown";
  s.className = "state " + (st.state || "");
  text("reason", st.reason ? "(" + st.reason + ")" : "");
  text("paused-by", st.paused_by ? "paused by " + st.paused_by : "");
  text("site-time", st.site_time || "-");
  text("steps", st.steps === undefined ? "-" : String(st.steps));
  text("steps-written", st.steps_written === undefined ? "-" : String(st.steps_written));
  text("latency", typeof st.loop_latency_s === "number" ? fmt(st.loop_latency_s, 3) + " s" : "-");
  text("updated", st.updated_at || "-");
  text("kgco2-so-far", fmt(st.kgco2_so_far, 1) + " kgCO2");
  text("kgco2-saved", typeof st.kgco2_saved_so_far === "number" ? fmt(st.kgco2_saved_so_far, 1) + " kgCO2" : "not estimated yet");
  const plan = st.plan || {};
  text("plan-status", plan.status || "-");
  text("plan-fallback", plan.fallback ? "fallback: " + plan.fallback : "");
  text("plan-solve", typeof plan.solve_s === "number" ? fmt(plan.solve_s, 3) + " s" : "-");
  const ul = $("refusals");
  ul.replaceChildren();
  const refusals = st.refusals || [];
  if (!refusals.length) ul.appendChild(el("li", "small", "none"));
  for (const r of refusals.slice(-10)) {
    ul.appendChild(el("li", null, (r.site_time || "") + ": " + (r.reasons || []).join("; ")));
  }
}

function showPoints(doc) {
  const tbody = $("points").querySelector("tbody");
  tbody.replaceChildren();
  for (const [name, p] of Object.entries(doc.points || {})) {
    const tr = el("tr");
    tr.dataset.point = name;
    tr.appendChild(el("td", null, name));
    tr.appendChild(el("td", "value", fmt(p.value)));
    tr.appendChild(el("td", "planned", fmt(p.planned)));
    const label = p.control === "coolshift" ? "commanded by Coolshift" : "local control";
    const td = el("td", "control " + p.control, label);
    td.dataset.control = p.control;
    tr.appendChild(td);
    tbody.appendChild(tr);
  }
}

// One SVG line chart: series = [{label, color, dash, points: [[x, y], ...]}], x = step index.
function drawChart(id, series, xLabels, unit) {
  const W = 1000, H = 220, L = 60, R = 10, T = 10, B = 28;
  const box = $(id);
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 " + W + " " + H);
  svg.setAttribute("preserveAspectRatio", "none");
  const ys = series.flatMap(s => s.points.map(p => p[1]));
  const n = Math.max(xLabels.length, 2);
  if (ys.length) {
    let lo = Math.min(...ys), hi = Math.max(...ys);
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.08;
    lo = (lo >= 0 && lo - pad < 0) ? 0 : lo - pad;  // powers never drawn below zero
    hi += pad;
    const X = i => L + (W - L - R) * i / (n - 1);
    const Y = v => T + (H - T - B) * (1 - (v - lo) / (hi - lo));
    for (const [v, anchor] of [[lo, "end"], [hi, "end"]]) {
      const t = document.createElementNS(SVG_NS, "text");
      t.setAttribute("x", L - 4); t.setAttribute("y", Y(v) + 4); t.setAttribute("text-anchor", anchor);
      t.setAttribute("font-size", "12"); t.textContent = fmt(v, 1) + (unit ? " " + unit : "");
      svg.appendChild(t);
    }
    const ends = xLabels.length > 1 ? [[0, "start"], [xLabels.length - 1, "end"]] : [[0, "start"]];
    for (const [i, anchor] of ends) {
      if (!xLabels[i]) continue;
      const t = document.createElementNS(SVG_NS, "text");
      t.setAttribute("x", X(i)); t.setAttribute("y", H - 8); t.setAttribute("text-anchor", anchor);
      t.setAttribute("font-size", "12"); t.textContent = xLabels[i].replace("+00:00", "Z");
      svg.appendChild(t);
    }
    for (const s of series) {
      if (!s.points.length) continue;
      const line = document.createElementNS(SVG_NS, "polyline");
      line.setAttribute("points", s.points.map(p => X(p[0]).toFixed(1) + "," + Y(p[1]).toFixed(1)).join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", s.color);
      line.setAttribute("stroke-width", "2");
      if (s.dash) line.setAttribute("stroke-dasharray", "6 4");
      line.dataset.series = s.label;
      svg.appendChild(line);
      const last = s.points[s.points.length - 1];  // the latest value, visible even with one step
      const dot = document.createElementNS(SVG_NS, "circle");
      dot.setAttribute("cx", X(last[0]).toFixed(1)); dot.setAttribute("cy", Y(last[1]).toFixed(1));
      dot.setAttribute("r", "4"); dot.setAttribute("fill", s.dash ? "none" : s.color); dot.setAttribute("stroke", s.color);
      svg.appendChild(dot);
    }
  }
  const legend = el("div", "legend");
  for (const s of series) {
    const sp = el("span", null, (s.dash ? "- - " : "\u2014 ") + s.label);
    sp.style.color = s.color;
    legend.appendChild(sp);
  }
  box.replaceChildren(svg, legend);
}

function series(steps, key, field, label, color, dash, shift) {
  const pts = [];
  steps.forEach((s, i) => {
    const v = (s[field] || {})[key];
    if (typeof v === "number" && isFinite(v) && i + (shift || 0) < steps.length) pts.push([i + (shift || 0), v]);
  });
  return { label: label, color: color, dash: dash, points: pts };
}

function showHistory(steps) {
  const labels = steps.map(s => s.site_time || "");
  const last = steps.length ? steps[steps.length - 1] : {};
  const keys = Object.keys(last.targets || {}).filter(k => k in (last.measured || {})).sort();
  const sp = [];
  keys.forEach((k, j) => {
    const c = COLORS[j % COLORS.length];
    sp.push(series(steps, k, "targets", k + " planned", c, true));
    sp.push(series(steps, k, "measured", k + " measured", c, false));
  });
  drawChart("chart-setpoints", sp, labels, "\u00b0C");
  // the plan's prediction for a step is compared with what was measured one step later
  drawChart("chart-power", [
    series(steps, "cooling_power_kw", "predicted", "cooling power predicted", COLORS[0], true, 1),
    series(steps, "cooling_power_kw", "measured", "cooling power measured", COLORS[0], false),
    series(steps, "facility_power_kw", "measured", "facility power measured", COLORS[1], false),
  ], labels, "kW");
}

function showAudit(doc) {
  text("audit-chain", doc.chain_ok ? "(hash chain verified, " + doc.total + " records)"
                                   : "(hash chain NOT verified: " + (doc.problems || []).join("; ") + ")");
  const tbody = $("audit").querySelector("tbody");
  tbody.replaceChildren();
  for (const r of (doc.records || []).slice().reverse()) {
    const tr = el("tr");
    for (const v of [r.id, r.time_utc, r.action, r.point, r.new_value, r.result, r.detail]) {
      const shown = typeof v === "number" && !Number.isInteger(v) ? String(Number(v.toFixed(3))) : v;
      tr.appendChild(el("td", null, shown === null || shown === undefined ? "" : String(shown)));
    }
    tbody.appendChild(tr);
  }
}

async function refresh() {
  try {
    const [st, pts, hist, aud] = await Promise.all([
      getJSON("/api/status"), getJSON("/api/points"), getJSON("/api/history?n=192"), getJSON("/api/audit?n=12")]);
    showStatus(st);
    showPoints(pts);
    showHistory(hist.steps || []);
    showAudit(aud);
    text("conn", "");
  } catch (e) {
    text("conn", "API unreachable: " + e.message);
  }
}

async function act(action) {
  const token = $("token").value;
  if (!token) { text("action-result", "enter the token (COOLSHIFT_API_TOKEN) first"); return; }
  if (action === "release" && !window.confirm("Hand every point back to local control now?")) return;
  try {
    const r = await fetch("/api/" + action, {
      method: "POST",
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: JSON.stringify({ operator: $("operator").value || "console" }),
    });
    const doc = await r.json().catch(() => ({}));
    text("action-result", r.ok ? action + " requested by " + doc.requested_by
                               : action + " refused (HTTP " + r.status + "): " + (doc.error || ""));
  } catch (e) {
    text("action-result", action + " failed: " + e.message);
  }
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const a of ["release", "pause", "resume"]) $(a).addEventListener("click", () => act(a));
  refresh();
  setInterval(refresh, POLL_MS);
});
