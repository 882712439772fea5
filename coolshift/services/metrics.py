"""Prometheus metrics of the live loop, read from its status at scrape time.

A custom collector (:class:`LoopCollector`) turns ``LiveView.status`` into metric families
when Prometheus scrapes ``/metrics``: nothing to update per step, and a value that the loop
has not produced yet (no telemetry, no drift check, no saving estimate) is left out rather
than reported as 0. Names follow Prometheus' conventions (base units in the name, counters
end in ``_total``): https://prometheus.io/docs/practices/naming/
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from coolshift.control.live import COOLING_KW, FACILITY_KW, IT_KW

__all__ = ["LoopCollector", "loop_registry", "LOOP_STATES", "carbon_rate_kgco2_per_h", "pue"]

# The loop's states (coolshift.usecases.operate): each is one series of coolshift_loop_state.
LOOP_STATES = ("running", "paused", "handed_back", "stopped")


def _num(v) -> float | None:
    """A finite float, or None for anything missing or not a number."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def carbon_rate_kgco2_per_h(facility_kw: float | None, gco2_per_kwh: float | None) -> float | None:
    """Emission rate now: facility power [kW] x grid intensity [gCO2/kWh] / 1000 [g/kg] = kgCO2/h."""
    if facility_kw is None or gco2_per_kwh is None:
        return None
    return facility_kw * gco2_per_kwh / 1000.0


def pue(facility_kw: float | None, it_kw: float | None) -> float | None:
    """Power usage effectiveness: facility power over IT power (The Green Grid's definition)."""
    if facility_kw is None or it_kw is None or it_kw <= 0:
        return None
    return facility_kw / it_kw


def _gauge(name: str, doc: str, value: float | None) -> Iterator[Metric]:
    if value is not None:
        g = GaugeMetricFamily(name, doc)
        g.add_metric([], value)
        yield g


class LoopCollector(Collector):
    """The loop's status as metric families. ``status``: returns the live status dict;
    ``history``: the recent steps (the last step's grid intensity); ``api_refusals``: the
    number of operator actions the API refused."""

    def __init__(self, status: Callable[[], dict], history: Callable[[], list], api_refusals: Callable[[], int]):
        self._status, self._history, self._api_refusals = status, history, api_refusals

    def collect(self) -> Iterator[Metric]:
        st = dict(self._status() or {})
        tele = st.get("telemetry") or {}
        hist = self._history() or []
        last = hist[-1] if hist and isinstance(hist[-1], dict) else {}
        facility_kw, it_kw = _num(tele.get(FACILITY_KW)), _num(tele.get(IT_KW))
        gco2 = _num(last.get("gco2_per_kwh"))
        yield from _gauge("coolshift_carbon_rate_kgco2_per_hour",
                          "Facility power times grid intensity at the last step (kgCO2/h)",
                          carbon_rate_kgco2_per_h(facility_kw, gco2))
        yield from _gauge("coolshift_grid_intensity_gco2_per_kwh", "Grid intensity the last step planned on (gCO2/kWh)",
                          gco2)
        yield from _gauge("coolshift_pue", "Facility power over IT power at the last step", pue(facility_kw, it_kw))
        yield from _gauge("coolshift_facility_power_kw", "Facility power measured at the last step (kW)", facility_kw)
        yield from _gauge("coolshift_cooling_power_kw", "Cooling power measured at the last step (kW)",
                          _num(tele.get(COOLING_KW)))
        yield from _gauge("coolshift_loop_latency_seconds", "Telemetry read to verified write, last step (s)",
                          _num(st.get("loop_latency_s")))
        drift = st.get("drift") or {}
        yield from _gauge("coolshift_drift_cooling_error_ratio",
                          "Drift gate: plant model's cooling-power error on the last step (fraction of measured)",
                          _num(drift.get("cooling_error_frac")))
        yield from _gauge("coolshift_drift_inlet_error_kelvin",
                          "Drift gate: plant model's largest rack-inlet error on the last step (K)",
                          _num(drift.get("inlet_error_c")))
        yield from _gauge("coolshift_carbon_so_far_kgco2", "Carbon emitted since the loop started (kgCO2)",
                          _num(st.get("kgco2_so_far")))
        yield from _gauge("coolshift_carbon_saved_so_far_kgco2",
                          "Estimated carbon saved against best practice since the loop started (kgCO2)",
                          _num(st.get("kgco2_saved_so_far")))
        yield from _gauge("coolshift_retrain_model", "1 when the drift gate flagged the plant model for retraining",
                          1.0 if st.get("retrain_model") else 0.0)
        state = str(st.get("state") or "")
        g = GaugeMetricFamily("coolshift_loop_state", "1 for the loop's current state", labels=["state"])
        for s in LOOP_STATES + ((state,) if state and state not in LOOP_STATES else ()):
            g.add_metric([s], 1.0 if s == state else 0.0)
        yield g
        refusals = st.get("refusals_total")
        if _num(refusals) is None:  # the status keeps the last refusals only; their count is a floor
            refusals = len(st.get("refusals") or [])
        c = CounterMetricFamily("coolshift_refusals", "Steps the safety layer refused to write")
        c.add_metric([], float(refusals))
        yield c
        c = CounterMetricFamily("coolshift_api_refusals", "Operator actions the API refused (no or wrong token)")
        c.add_metric([], float(self._api_refusals()))
        yield c
        for key, name, doc in (("steps", "coolshift_steps", "Planning steps the loop has run"),
                               ("steps_written", "coolshift_steps_written", "Steps written to the BMS")):
            v = _num(st.get(key))
            if v is not None:
                c = CounterMetricFamily(name, doc)
                c.add_metric([], v)
                yield c


def loop_registry(collector: LoopCollector) -> CollectorRegistry:
    """A registry of its own (not the process-wide default): one per app, so tests and
    several apps in one process never collide on metric names."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg
