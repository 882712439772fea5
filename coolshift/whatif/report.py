"""Self-contained HTML report of a what-if study: a side-by-side table and embedded plots."""

from __future__ import annotations

import base64
import html
import io
import math

__all__ = ["render_report"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3} td.l,th.l{text-align:left}
.failed{color:#b00} .note{color:#555;font-size:0.9em}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
"""


def _fmt(v, digits=1):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return html.escape(str(v))


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return '<img alt="plot" src="data:image/png;base64,' + base64.b64encode(buf.getvalue()).decode() + '">'


def _plots(rows: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = {n: r for n, r in rows.items() if r.get("status") == "ok"}
    if not ok:
        return []
    names = list(ok)
    roles = list(next(iter(ok.values()))["by_policy"])
    y = range(len(names))
    h = 0.8 / max(len(roles), 1)
    out = []
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.8), sharey=True)
    for k, role in enumerate(roles):
        pol = ok[names[0]]["by_policy"][role]["policy"]
        op = [ok[n]["by_policy"][role]["tco2_operational"] for n in names]
        emb = [ok[n]["by_policy"][role]["tco2_embodied"] for n in names]
        pos = [i + (k - (len(roles) - 1) / 2) * h for i in y]
        axes[0].barh(pos, op, height=h, label=f"operational, {pol}")
        axes[0].barh(pos, emb, left=op, height=h, hatch="//", alpha=0.6, label=f"embodied (amortised), {pol}")
        axes[1].barh(pos, [ok[n]["by_policy"][role]["facility_kwh"] / 1000.0 for n in names], height=h, label=pol)
    axes[0].set_yticks(list(y), names)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("tCO2e over the period")
    axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    axes[1].set_xlabel("facility MWh over the period")
    axes[1].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    fig.suptitle("Carbon and energy per scenario")
    out.append(_png(fig))

    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(names) + 1.8), sharey=True)
    net = [ok[n]["net_tco2_change_vs_baseline"] for n in names]
    axes[0].barh(list(y), net, color=["#2a7" if v < 0 else "#c44" for v in net])
    axes[0].axvline(0, color="k", lw=0.8)
    axes[0].set_yticks(list(y), names)
    axes[0].invert_yaxis()
    axes[0].set_xlabel("net tCO2e change vs current site (operational + embodied)")
    pb = [ok[n]["payback_months"] for n in names]
    axes[1].barh(list(y), [v if v is not None else 0.0 for v in pb], color="#37a")
    for i, v in enumerate(pb):
        axes[1].text(0, i, " n/a" if v is None else f" {v:.1f}", va="center", fontsize=8)
    axes[1].set_xlabel("carbon payback [months]")
    stand_in = ok[names[0]].get("stand_in_for")
    fig.suptitle(f"Headline policy: {ok[names[0]]['headline_policy']}" + (f" (stand-in for {stand_in})" if stand_in else ""))
    out.append(_png(fig))

    fig, ax = plt.subplots(figsize=(12, 0.45 * len(names) + 1.8))
    cool = [ok[n]["by_policy"][roles[-1]].get("cooling_kwh") or 0.0 for n in names]
    fan = [ok[n]["by_policy"][roles[-1]].get("server_fan_kwh") or 0.0 for n in names]
    ax.barh([i - 0.2 for i in y], [c / 1000 for c in cool], height=0.4, label="cooling (chillers, CRAH fans, pumps, towers)")
    ax.barh([i + 0.2 for i in y], [f / 1000 for f in fan], height=0.4, label="server fan/leakage rise (inlet above 25 degC)")
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xlabel("MWh over the period")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2)
    ax.set_title("Cooling energy against the server fan penalty (headline policy)")
    out.append(_png(fig))
    return out


def _plans(p: dict | None) -> str:
    return "-" if not p else f"{p.get('plans', 0)} ({p.get('fallback_plans', 0)})"


def _model_note(meta: dict) -> str:
    """What the optimiser planned with, when it played a role."""
    if not meta.get("forecast"):
        return ""
    train = meta.get("train") or {}
    return (f"The coolshift policy re-plans every {meta.get('replan_interval_h')} h on <b>{html.escape(str(meta['forecast']))}"
            f"</b> forecasts with a plant model learned for each scenario's own site from {meta.get('train_days')} days of "
            f"simulated commissioning telemetry (explore policy){': ' + html.escape(train['note']) if train.get('note') else ''}; "
            f"a plan that fails falls back to the best-practice rule (column 'plans (fallback)').")


def render_report(rows: dict, meta: dict) -> str:
    """HTML page: study settings, side-by-side table (headline policy and every policy), plots."""
    head = ["scenario", "kind", "policy", "facility MWh", "PUE", "tCO2 operational", "tCO2 embodied (period)",
            "one-off embodied tCO2e", "net tCO2 vs current", "payback months", "SLA viol.", "late units", "thermal min",
            "plans (fallback)"]
    trs = []
    for name, r in rows.items():
        if r.get("status") != "ok":
            trs.append(f'<tr class="failed"><td class="l">{html.escape(name)}</td><td class="l" colspan="{len(head) - 1}">'
                       f'{html.escape(str(r.get("status")))}: {html.escape(str(r.get("error")))}</td></tr>')
            continue
        for role, b in r["by_policy"].items():
            trs.append(
                "<tr>" + "".join([
                    f'<td class="l">{html.escape(name)}</td>', f'<td class="l">{_fmt(r.get("kind"))}</td>',
                    f'<td class="l">{_fmt(b["policy"])} ({role})</td>', f"<td>{_fmt(b['facility_kwh'] / 1000.0)}</td>",
                    f"<td>{_fmt(b['pue'], 3)}</td>", f"<td>{_fmt(b['tco2_operational'], 2)}</td>",
                    f"<td>{_fmt(b['tco2_embodied'], 2)}</td>", f"<td>{_fmt(r['tco2_embodied_one_off'], 1)}</td>",
                    f"<td>{_fmt(b['net_tco2_change_vs_baseline'], 2)}</td>", f"<td>{_fmt(b['payback_months'], 1)}</td>",
                    f"<td>{_fmt(b.get('sla_violations'))}</td>", f"<td>{_fmt(b.get('late_work_units'), 1)}</td>",
                    f"<td>{_fmt(b.get('thermal_violation_minutes'), 0)}</td>",
                    f"<td>{_plans(b.get('planner'))}</td>",
                ]) + "</tr>"
            )
    table = "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(trs) + "</table>"
    settings = "".join(f"<tr><th class='l'>{html.escape(str(k))}</th><td class='l'>{html.escape(str(v))}</td></tr>"
                       for k, v in meta.items() if not isinstance(v, (dict, list)))
    pol = meta.get("policies", {})
    note = html.escape(pol.get("note") or "")
    srcs = sorted({s for r in rows.values() for s in r.get("sources", []) or []}
                  | {ln["source"] for r in rows.values() for ln in (r.get("embodied") or {}).get("hardware", []) if ln.get("source")})
    plots = "".join(_plots(rows))
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>Coolshift what-if: {html.escape(str(meta.get('site')))}</title>
<style>{_CSS}</style></head><body>
<h1>What-if study: {html.escape(str(meta.get('site')))}</h1>
<table>{settings}</table>
<p class="note">Policies: baseline <b>{html.escape(str(pol.get('baseline')))}</b>, Coolshift <b>{html.escape(str(pol.get('coolshift')))}</b>. {note} {_model_note(meta)}</p>
<p class="note">Operational carbon: {html.escape(str(meta.get('accounting')))}-based Scope 2. Embodied carbon: the project's one-off
manufacturing + transport footprint (plus the unamortised part of retired hardware) amortised over the new hardware's
lifetime; the share falling in the period is shown. Payback: one-off embodied carbon / operational carbon saved per month.</p>
<h2>Side by side</h2>{table}
<h2>Plots</h2>{plots}
<h2>Sources</h2><ul>{''.join(f'<li>{html.escape(s)}</li>' for s in srcs)}</ul>
</body></html>"""
