"""Learned-model held-out accuracy against the issue-22 targets, and its speed.

Commissioning telemetry as `coolshift demo` makes it: the simulator runs the `explore`
policy (its default design: chilled water drawn from a Beta(2, 1) law toward the warm end,
see ``ExplorePolicy``) over San Jose 2022 and exports telemetry with sensor noise (seed 0). The linear
plant model and the gradient-boosting reference are scored on

* the time block `coolshift train` checks by default (train before 2022-09-30, test from
  2022-10-01, a 1-day gap), and
* another city's weather: trained on the whole San Jose year, tested on the same site
  under Philadelphia 2022 weather (explore, seed 1), a year it never saw.

Targets (issue 22): cooling-power MAPE <= 5 %, PUE MAE <= 0.008, on both. Fit / predict /
coefficients are timed against a floor measured in the same run (one numpy least-squares
solve of the same size). Prints a table, then one JSON line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]
TARGET_COOLING_MAPE_PCT = 5.0
TARGET_PUE_MAE = 0.008


def _telemetry(site, seed: int, weather=None) -> pd.DataFrame:
    from coolshift.control.policies import get_policy
    from coolshift.io import load_site_data
    from coolshift.simulations.engine import simulate
    from coolshift.simulations.telemetry import to_telemetry

    data = load_site_data(site, "2022-01-01", "2023-01-01", weather=weather)
    res = simulate(site, data, get_policy("explore", seed=seed))
    return to_telemetry(res.timeseries, res.names.zones, res.names.pools, seed=seed)


def main() -> None:
    from coolshift.config import load_site
    from coolshift.models.thermal import LinearPlantModel, ReferencePlantModel, plant_metrics, time_block_split

    site = load_site(ROOT / "configs" / "sites" / "sanjose_colo_2mw.yaml")
    zones = [z.name for z in site.zones]
    year = _telemetry(site, seed=0)
    other = _telemetry(site, seed=1, weather=ROOT / "data" / "weather" / "openmeteo_2022" / "US-MIDA-PJM_2022.json")
    train_b, test_b = time_block_split(year, pd.Timestamp("2022-10-01", tz="UTC"), gap="1D")
    splits = {"block": (train_b, test_b), "cross_weather": (year, other)}

    fig: dict = {"train_rows": len(year), "block_test_rows": len(test_b), "cross_weather_test_rows": len(other)}
    # floor: one least-squares solve with the linear model's design size (rows x 6 decisions x 13 basis)
    D = np.random.default_rng(0).standard_normal((len(year), 78))
    t = time.perf_counter()
    np.linalg.lstsq(D, D[:, 0], rcond=None)
    fig["floor_lstsq_s"] = time.perf_counter() - t
    for name, cls in (("linear", LinearPlantModel), ("reference", ReferencePlantModel)):
        for split, (a, b) in splits.items():
            m = cls()
            t = time.perf_counter()
            m.fit(a, site)
            fig[f"{name}_{split}_fit_s"] = time.perf_counter() - t
            t = time.perf_counter()
            pred = m.predict(b)
            fig[f"{name}_{split}_predict_s"] = time.perf_counter() - t
            met = plant_metrics(b, pred, zones)
            for k in ("cooling_power_mape_pct", "facility_power_mape_pct", "inlet_temp_mae_c", "pue_mae"):
                fig[f"{name}_{split}_{k}"] = met[k]
            if name == "linear":
                fig[f"linear_{split}_pieces"] = int(m.n_cooling_pieces_)
    fc = other.iloc[:96].rename(columns={"outside_temp_c": "temp_c", "outside_rh_pct": "rh_pct"})[["temp_c", "rh_pct"]]
    m_lin = LinearPlantModel().fit(year.iloc[:5000], site)
    t = time.perf_counter()
    for _ in range(20):
        m_lin.coefficients(site, fc)
    fig["coefficients_96_steps_ms"] = (time.perf_counter() - t) / 20 * 1000
    fig["linear_fit_over_floor"] = fig["linear_cross_weather_fit_s"] / fig["floor_lstsq_s"]
    fig["target_cooling_power_mape_pct"] = TARGET_COOLING_MAPE_PCT
    fig["target_pue_mae"] = TARGET_PUE_MAE
    for split in splits:
        fig[f"linear_{split}_meets_targets"] = bool(
            fig[f"linear_{split}_cooling_power_mape_pct"] <= TARGET_COOLING_MAPE_PCT
            and fig[f"linear_{split}_pue_mae"] <= TARGET_PUE_MAE)

    print(f"{'figure':48s} value")
    for k, v in fig.items():
        print(f"{k:48s} {v:.4g}" if isinstance(v, float) else f"{k:48s} {v}")
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
