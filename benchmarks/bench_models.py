"""Learned-model speed and held-out accuracy on a year of simulator telemetry.

Trains the linear plant model and the gradient-boosting reference on San Jose 2022
(explore policy), tests on the same site under Philadelphia 2022 weather, and times
fit / predict / coefficients against a floor measured in the same run (one numpy
least-squares solve of the same size). Prints a table, then one JSON line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
ROOT = Path(__file__).resolve().parents[1]


def _telemetry(site, weather=None):
    from coolshift.io import load_site_data
    from coolshift.simulations.engine import simulate
    from coolshift.control.policies import get_policy

    data = load_site_data(site, "2022-01-01", "2023-01-01", weather=weather)
    return simulate(site, data, get_policy("explore")).timeseries


def main() -> None:
    from coolshift.config import load_site
    from coolshift.models.thermal import LinearPlantModel, ReferencePlantModel, plant_metrics

    site = load_site(ROOT / "configs" / "sites" / "sanjose_colo_2mw.yaml")
    zones = [z.name for z in site.zones]
    train = _telemetry(site)
    test = _telemetry(site, weather=ROOT / "data" / "weather" / "openmeteo_2022" / "US-MIDA-PJM_2022.json")

    fig = {"train_rows": len(train), "test_rows": len(test)}
    # floor: one least-squares solve with the linear model's design size (rows x 6 decisions x 13 basis)
    D = np.random.default_rng(0).standard_normal((len(train), 78))
    t = time.perf_counter()
    np.linalg.lstsq(D, D[:, 0], rcond=None)
    fig["floor_lstsq_s"] = time.perf_counter() - t
    for name, m in (("linear", LinearPlantModel()), ("reference", ReferencePlantModel())):
        t = time.perf_counter()
        m.fit(train, site)
        fig[f"{name}_fit_s"] = time.perf_counter() - t
        t = time.perf_counter()
        pred = m.predict(test)
        fig[f"{name}_predict_s"] = time.perf_counter() - t
        for k, v in plant_metrics(test, pred, zones).items():
            if k != "n_test_rows":
                fig[f"{name}_{k}"] = v
    fc = test.iloc[:96].rename(columns={"outside_temp_c": "temp_c", "outside_rh_pct": "rh_pct"})[["temp_c", "rh_pct"]]
    t = time.perf_counter()
    for _ in range(20):
        m_lin = LinearPlantModel().fit(train.iloc[:5000], site) if _ == 0 else m_lin
        m_lin.coefficients(site, fc)
    fig["coefficients_96_steps_ms"] = (time.perf_counter() - t) / 20 * 1000
    fig["linear_fit_over_floor"] = fig["linear_fit_s"] / fig["floor_lstsq_s"]
    fig["reference_fit_over_linear_fit"] = fig["reference_fit_s"] / fig["linear_fit_s"]

    print(f"{'figure':45s} value")
    for k, v in fig.items():
        print(f"{k:45s} {v:.4g}" if isinstance(v, float) else f"{k:45s} {v}")
    print(json.dumps(fig))


if __name__ == "__main__":
    main()
