"""MLflow logging of a what-if study: one parent run, one child run per scenario.

MLflow is imported lazily. Tracking store: ``MLFLOW_TRACKING_URI`` when set, otherwise a
local sqlite file in the output folder (``sqlite:///OUT/mlflow.db``) with artifacts under
``OUT/mlartifacts``; telemetry is switched off.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

__all__ = ["log_study"]

_METRICS = ("facility_kwh", "it_kwh", "pue", "tco2_operational", "tco2_embodied", "tco2_embodied_one_off",
            "net_tco2_change_vs_baseline", "operational_tco2_saved", "payback_months")


def _flat_params(doc: dict | None, prefix: str = "", out: dict | None = None) -> dict:
    out = {} if out is None else out
    for k, v in (doc or {}).items():
        key = re.sub(r"[^A-Za-z0-9_\-. :/]", "_", f"{prefix}{k}")
        if isinstance(v, dict):
            _flat_params(v, key + ".", out)
        else:
            out[key[:250]] = json.dumps(v, default=str)[:500] if not isinstance(v, (int, float, str)) else v
    return out


def log_study(out_dir: Path, rows: dict, meta: dict, scenarios: dict, artifacts: list[Path], experiment: str = "coolshift-whatif") -> dict:
    """Log the study; returns ``{"tracking_uri", "experiment_id", "parent_run_id", "child_run_ids"}``."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow

    out_dir = Path(out_dir).resolve()
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{out_dir / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = mlflow.tracking.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        art = None if os.environ.get("MLFLOW_TRACKING_URI") else (out_dir / "mlartifacts").as_uri()
        exp_id = client.create_experiment(experiment, artifact_location=art)
    else:
        exp_id = exp.experiment_id
    child_ids = {}
    with mlflow.start_run(experiment_id=exp_id, run_name=f"whatif {meta.get('site')} {meta.get('start')}") as parent:
        mlflow.log_params({k: v for k, v in meta.items() if isinstance(v, (str, int, float)) and v is not None})
        mlflow.log_params({f"policy.{k}": v for k, v in (meta.get("policies") or {}).items() if v})
        for name, row in rows.items():
            with mlflow.start_run(experiment_id=exp_id, run_name=name, nested=True) as child:
                child_ids[name] = child.info.run_id
                mlflow.set_tags({"scenario": name, "status": row.get("status", ""), "kind": str(row.get("kind"))})
                params = _flat_params(scenarios.get(name) or {})
                if params:
                    mlflow.log_params(dict(list(params.items())[:100]))
                if row.get("status") != "ok":
                    mlflow.set_tag("error", str(row.get("error"))[:4000])
                    continue
                mlflow.log_metrics({k: float(row[k]) for k in _METRICS if isinstance(row.get(k), (int, float))})
                for role, b in row.get("by_policy", {}).items():
                    mlflow.log_metrics({f"{role}.{k}": float(b[k]) for k in _METRICS
                                        if isinstance(b.get(k), (int, float))})
        for p in artifacts:
            if Path(p).exists():
                mlflow.log_artifact(str(p))
        parent_id = parent.info.run_id
    return {"tracking_uri": uri, "experiment_id": exp_id, "parent_run_id": parent_id, "child_run_ids": child_ids}
