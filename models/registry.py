"""MLflow tracking and registry for the plant models: log, register, promote, load by alias.

Default store: a local sqlite database in the site's working folder
(``<workdir>/mlflow.db``, artifacts in ``<workdir>/mlartifacts``), no server needed;
``MLFLOW_TRACKING_URI`` points it at a real MLflow server. ``<workdir>`` is
``$COOLSHIFT_WORKDIR/<site>`` when that variable is set, else ``./.coolshift/<site>``.
Models are serialised with skops (no pickle); the types of our own estimators are
passed as trusted. MLflow is imported lazily (about 1.4 s) and its usage telemetry is
switched off.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from coolshift.models.thermal import check_plant

__all__ = [
    "site_workdir",
    "tracking_uri",
    "configure",
    "model_name",
    "log_plant_model",
    "promote_if_better",
    "load_plant_model",
    "production_metrics",
    "better_than",
    "PRODUCTION",
]

PRODUCTION = "production"
EXPERIMENT = "coolshift-plant"
# Which held-out metrics decide "better", each divided by its target from issue 4
# and issue 22 (cooling MAPE 5 %, inlet MAE 0.5 degC, PUE MAE 0.008) so they weigh alike.
SCORE_TARGETS = {"cooling_power_mape_pct": 5.0, "inlet_temp_mae_c": 0.5, "pue_mae": 0.008}
# Types our estimators hold, trusted by skops when loading (sklearn internals included).
TRUSTED_TYPES = [
    "coolshift.models.thermal.LinearPlantModel",
    "coolshift.models.thermal.ReferencePlantModel",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "numpy.float64",
    "numpy.int64",
]


def site_workdir(site) -> Path:
    base = os.environ.get("COOLSHIFT_WORKDIR")
    root = Path(base) if base else Path.cwd() / ".coolshift"
    return root / site.name


def tracking_uri(workdir: Path | str) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<workdir>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    p = Path(workdir).resolve()
    p.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{p / 'mlflow.db'}"


def configure(workdir: Path | str):
    """Import mlflow, point it at the store, make sure the experiment has an explicit artifact location."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import mlflow

    uri = tracking_uri(workdir)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        loc = None
        if uri.startswith("sqlite:"):
            loc = (Path(workdir).resolve() / "mlartifacts").as_uri()
        client.create_experiment(EXPERIMENT, artifact_location=loc)
    mlflow.set_experiment(EXPERIMENT)
    return mlflow


def model_name(site, kind: str) -> str:
    """Registered name, e.g. ``coolshift-sanjose_colo_2mw-plant-linear``."""
    return f"coolshift-{site.name}-plant-{kind}"


def _trusted(model) -> list[str]:
    """Our listed types plus whatever skops reports as untrusted for this very model (we just built it)."""
    try:
        import skops.io as sio

        extra = sio.get_untrusted_types(data=sio.dumps(model))
    except Exception:  # noqa: BLE001 - skops absent or unable: fall back on the list
        extra = []
    return sorted(set(TRUSTED_TYPES) | set(extra))


def log_plant_model(model, site, kind: str, example, metrics: dict[str, float], params: dict[str, Any] | None = None):
    """Log ``model`` with its signature and held-out metrics in the active run; register it.

    Returns the new ``ModelVersion``. Call inside ``mlflow.start_run()``.
    """
    import mlflow
    from mlflow.models import infer_signature

    signature = infer_signature(example, model.predict(example))
    info = mlflow.sklearn.log_model(
        model, name=f"plant-{kind}", signature=signature,
        registered_model_name=model_name(site, kind), serialization_format="skops",
        skops_trusted_types=_trusted(model),
    )
    client = mlflow.MlflowClient()
    name = model_name(site, kind)
    versions = client.search_model_versions(f"name='{name}'")
    mv = max((v for v in versions if v.run_id == info.run_id), key=lambda v: int(v.version))
    for k, v in metrics.items():
        client.set_model_version_tag(name, mv.version, f"metric.{k}", str(v))
    for k, v in (params or {}).items():
        client.set_model_version_tag(name, mv.version, f"param.{k}", str(v))
    client.set_model_version_tag(name, mv.version, "plant_fingerprint", site.plant_fingerprint())
    return mv


def production_metrics(site, kind: str) -> tuple[str | None, dict[str, float] | None]:
    """(version, metrics) of the current ``production`` alias, or (None, None)."""
    import mlflow

    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(model_name(site, kind), PRODUCTION)
    except mlflow.exceptions.MlflowException:
        return None, None
    metrics = {k[len("metric."):]: float(v) for k, v in mv.tags.items() if k.startswith("metric.")}
    return mv.version, metrics


def _score(m: dict[str, float]) -> float:
    return sum(m[k] / t for k, t in SCORE_TARGETS.items())


def better_than(new: dict[str, float], old: dict[str, float] | None) -> tuple[bool, str]:
    """Is ``new`` better on the held-out metrics? Returns (decision, reason)."""
    if not old or any(k not in old for k in SCORE_TARGETS):
        return True, "no production model yet"
    a, b = _score(new), _score(old)
    detail = ", ".join(f"{k} {new[k]:.4g} vs {old[k]:.4g}" for k in SCORE_TARGETS)
    if a < b:
        return True, f"better held-out score {a:.3f} < {b:.3f} ({detail})"
    return False, f"not better: held-out score {a:.3f} >= production {b:.3f} ({detail})"


def promote_if_better(site, kind: str, version, metrics: dict[str, float]) -> tuple[bool, str]:
    """Set the ``production`` alias on ``version`` when it beats the current one."""
    import mlflow

    cur_version, cur = production_metrics(site, kind)
    ok, why = better_than(metrics, cur)
    if cur_version is not None and not ok:
        tags = mlflow.MlflowClient().get_model_version(model_name(site, kind), cur_version).tags
        if tags.get("plant_fingerprint") != site.plant_fingerprint():
            # the production model is of another plant (or of unknown plant): it cannot be used for this one
            ok, why = True, f"production version {cur_version} was trained on another plant ({why})"
    if ok:
        mlflow.MlflowClient().set_registered_model_alias(model_name(site, kind), PRODUCTION, str(version))
    return ok, why if cur_version is None or ok else f"{why}; production stays at version {cur_version}"


def load_plant_model(site, alias: str = PRODUCTION, kind: str = "linear", workdir: Path | str | None = None):
    """Load the registered plant model by alias; ``model_version_`` records which version it is.

    Raises :class:`~coolshift.models.thermal.PlantMismatchError` (a ``LookupError``) when the
    model was trained on a plant other than ``site``'s (:meth:`SiteConfig.plant_fingerprint`).

    Its :meth:`~coolshift.models.thermal.LinearPlantModel.coefficients` carry that version
    into :class:`~coolshift.coefficients.PlantCoefficients.model_version`.
    """
    mlflow = configure(workdir if workdir is not None else site_workdir(site))
    name = model_name(site, kind)
    client = mlflow.MlflowClient()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as exc:
        raise LookupError(f"no model {name!r} with alias {alias!r} in {mlflow.get_tracking_uri()}: "
                          f"run `coolshift train` first") from exc
    model = mlflow.sklearn.load_model(f"models:/{name}@{alias}")
    model.model_version_ = f"{name}/{mv.version}"
    check_plant(model, site, hint=f"retrain it for this plant: `coolshift train --site <this config>` "
                                  f"(registered as {name} version {mv.version})")
    return model
