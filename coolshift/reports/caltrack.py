"""CalTRACK daily and hourly baselines (OpenEEmeter's ``eemeter``), beside the ASHRAE Guideline 14
regression of :mod:`.mv`.

CalTRACK (LF Energy) fits a site's energy use to outdoor dry-bulb temperature [degF]: the daily
model with heating/cooling balance points per season and weekday/weekend, the hourly model with
time-of-week and temperature bins per month (three-month weighted). Each model is fitted on the
pre-period and driven by the post-period's temperature; avoided energy = adjusted baseline -
metered. Fit statistics on the pre-period with Guideline 14's formulas (:func:`.mv.cv_rmse`,
:func:`.mv.nmbe`, n in the denominator: eemeter does not report its parameter counts).

Why eemeter and not ``opendsm`` (its LF Energy successor): opendsm 1.2.7, the newest release,
requires pandas < 3. eemeter 4.1.1 runs on pandas 3 when fed hourly meter data (its granularity
check compares a daily offset with a Timedelta, which pandas 3 refuses; hourly input avoids it).
CalTRACK's data-sufficiency rules (a 365-day baseline) are reported, not enforced: shorter
periods still get a model, with the disqualifications listed.
"""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import pandas as pd

from coolshift.reports.mv import cv_rmse, nmbe

__all__ = ["CALTRACK_MODELS", "hourly_series", "unsupported_months", "caltrack_baselines"]

CALTRACK_MODELS = ("daily", "hourly")


def hourly_series(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """(facility energy [kWh] per hour, outside dry bulb [degF] per hour) of a step frame."""
    if "outside_temp_c" not in frame.columns:
        raise ValueError("column 'outside_temp_c' missing for the CalTRACK baselines (outdoor dry bulb)")
    step_h = frame.index.to_series().diff().dt.total_seconds().bfill().to_numpy() / 3600.0
    kwh = pd.Series(frame["facility_power_kw"].to_numpy(float) * step_h, index=frame.index).resample("h").sum(min_count=1)
    temp_f = frame["outside_temp_c"].resample("h").mean() * 9.0 / 5.0 + 32.0
    return kwh, temp_f


def unsupported_months(pre_index: pd.DatetimeIndex, post_index: pd.DatetimeIndex) -> list[int]:
    """Calendar months of the post-period the hourly model has no segment for: it fits one model per
    month from that month and its two neighbours (three-month weighted), so a month is covered
    when the pre-period holds it or a neighbour."""
    have = set(pre_index.month)
    return sorted(m for m in set(post_index.month)
                  if not ({m, (m - 2) % 12 + 1, m % 12 + 1} & have))


def _fit_one(kind: str, pre: tuple, post: tuple) -> dict:
    import eemeter.eemeter as ee

    t0 = time.perf_counter()
    if kind == "hourly":
        missing = unsupported_months(pre[0].dropna().index, post[0].dropna().index)
        if missing:
            return {"model": f"CalTRACK hourly (eemeter {_version()})", "interval": "h", "applicable": False,
                    "reason": f"the pre-period has no data in or next to month(s) {missing} of the post-period "
                              "(the hourly model has one segment per calendar month; CalTRACK asks for a 12-month baseline)",
                    "cv_rmse_pct": None, "nmbe_pct": None, "adjusted_baseline_kwh": None, "metered_kwh": None,
                    "avoided_kwh": None, "savings_pct": None, "disqualification": [], "fit_s": 0.0}
    if kind == "daily":
        base = ee.DailyBaselineData.from_series(pre[0], pre[1], is_electricity_data=True)
        model = ee.DailyModel().fit(base, ignore_disqualification=True)
        rep = ee.DailyReportingData.from_series(post[0], post[1], is_electricity_data=True)
        fit = model.predict(base, ignore_disqualification=True)
        pred = model.predict(rep, ignore_disqualification=True)
    else:
        base = ee.HourlyCaltrackBaselineData.from_series(pre[0], pre[1], is_electricity_data=True)
        model = ee.HourlyCaltrackModel().fit(base)
        rep = ee.HourlyCaltrackReportingData.from_series(post[0], post[1], is_electricity_data=True)
        fit = model.predict(base)
        pred = model.predict(rep)
    f = fit[["observed", "predicted"]].dropna()
    p = pred[["observed", "predicted"]].dropna()
    adjusted, metered = float(p["predicted"].sum()), float(p["observed"].sum())
    return {
        "model": f"CalTRACK {kind} (eemeter {_version()})", "interval": "D" if kind == "daily" else "h",
        "applicable": True, "reason": "", "baseline_intervals": int(len(f)), "reporting_intervals": int(len(p)),
        "cv_rmse_pct": 100.0 * cv_rmse(f["observed"], f["predicted"], 0),
        "nmbe_pct": 100.0 * nmbe(f["observed"], f["predicted"], 0),
        "adjusted_baseline_kwh": adjusted, "metered_kwh": metered, "avoided_kwh": adjusted - metered,
        "savings_pct": 100.0 * (adjusted - metered) / adjusted if adjusted > 0 else None,
        "disqualification": sorted({w.qualified_name for w in getattr(base, "disqualification", [])}),
        "fit_s": time.perf_counter() - t0,
    }


def _version() -> str:
    from importlib.metadata import version

    return version("eemeter")


def caltrack_baselines(pre: pd.DataFrame, post: pd.DataFrame, models=CALTRACK_MODELS) -> dict:
    """CalTRACK daily and/or hourly baseline results (one dict per model) for a pre and a post step frame."""
    bad = [m for m in models if m not in CALTRACK_MODELS]
    if bad:
        raise ValueError(f"unknown CalTRACK model(s) {bad}; choose from {CALTRACK_MODELS}")
    a, b = hourly_series(pre), hourly_series(post)
    if a[0].count() < 24 * 14 or b[0].count() < 24:
        raise ValueError("CalTRACK needs at least 14 days of pre-period and a day of post-period data")
    out = {}
    log = logging.getLogger("eemeter")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for m in models:
                out[m] = _fit_one(m, a, b)
    finally:
        log.setLevel(level)
    return out
