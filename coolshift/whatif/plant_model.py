"""The learned plant model of a scenario's site: commissioning telemetry, fit, disk cache.

A scenario changes the plant (a retrofit, a refresh, new setpoint limits), so the Coolshift
policy must plan with a model learned on *that* plant. The steps are the ones an operator
runs with the CLI (``coolshift simulate --policy explore --telemetry-out`` then
``coolshift train``), called here as library functions with the same defaults:

1. :func:`commissioning_telemetry`: the simulator runs the ``explore`` commissioning policy
   (setpoints and consolidation stepped within the safe envelope) on the scenario's site
   over a training window before the study period, exported as facility telemetry with
   sensor noise (:func:`coolshift.simulations.telemetry.to_telemetry`);
2. :func:`fit_plant_model`: :class:`coolshift.models.thermal.LinearPlantModel` with its
   default hyper-parameters, fitted on that telemetry (what ``coolshift train`` fits);
3. :func:`cached_plant_model`: both, cached on disk by :func:`plant_model_key` (a content
   hash of everything the fit depends on, the simulator's and the model's source included),
   so a sweep whose points share a plant fits it once and a resumed sweep never refits.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import time
from functools import lru_cache
from pathlib import Path

import pandas as pd

from coolshift.config import SiteConfig
from coolshift.models.thermal import PlantMismatchError, check_plant
from coolshift.schema import CARBON_GCO2_PER_KWH

__all__ = [
    "TRAIN_DAYS_DEFAULT",
    "EXPLORE_SEED",
    "commissioning_telemetry",
    "fit_plant_model",
    "plant_model_key",
    "cached_plant_model",
]

# Training window before the study period [days]: four weeks of 15-minute commissioning
# telemetry (2,688 rows) cover a month's weather swing and every explore block pattern; a
# fit takes ~1 s on the small example site (docs/whatif.md, "Cost of a scenario").
TRAIN_DAYS_DEFAULT = 28
EXPLORE_SEED = 0
# Site fields that cannot change the commissioning telemetry or the fitted plant model:
# grid intensity and contracts enter neither the explore policy nor the telemetry schema.
_NOT_PLANT = {"name", "description", "carbon", "grid_region", "renewables", "reporting"}


def commissioning_telemetry(site: SiteConfig, data: pd.DataFrame, seed: int = EXPLORE_SEED) -> pd.DataFrame:
    """Facility telemetry of an ``explore`` commissioning run of ``site`` over ``data`` (simulated)."""
    from coolshift.simulations.engine import simulate
    from coolshift.control.policies import get_policy
    from coolshift.simulations.telemetry import to_telemetry

    res = simulate(site, data, get_policy("explore", seed=seed))
    return to_telemetry(res.timeseries, [z.name for z in site.zones], [p.name for p in site.server_pools], seed=seed)


def fit_plant_model(site: SiteConfig, telemetry: pd.DataFrame):
    """The linear, LP-ready plant model ``coolshift train`` fits, on ``telemetry``."""
    from coolshift.models.thermal import LinearPlantModel

    return LinearPlantModel().fit(telemetry, site)


def _frame_digest(data: pd.DataFrame) -> str:
    cols = sorted(c for c in data.columns if not c.startswith(CARBON_GCO2_PER_KWH))
    h = hashlib.sha256(",".join(cols).encode())
    h.update(data.index.asi8.tobytes())
    h.update(pd.util.hash_pandas_object(data[cols], index=False).to_numpy().tobytes())
    return h.hexdigest()


# Modules whose code makes the telemetry and the fit: a change to any of them refits.
_CODE_MODULES = ("coolshift.models.thermal", "coolshift.simulations.engine", "coolshift.simulations.plant",
                 "coolshift.simulations.airside", "coolshift.simulations.servers", "coolshift.control.policies",
                 "coolshift.baselines", "coolshift.setpoints", "coolshift.workload", "coolshift.simulations.telemetry")


@lru_cache(maxsize=1)
def _code_digest() -> str:
    """Digest of the modules' source as this process first read it (once: the code a process runs
    does not change under it, even if the files are edited meanwhile)."""
    import importlib

    h = hashlib.sha256()
    for name in _CODE_MODULES:
        h.update(Path(importlib.import_module(name).__file__).read_bytes())
    return h.hexdigest()


def plant_model_key(site: SiteConfig, train_data: pd.DataFrame, seed: int = EXPLORE_SEED) -> str:
    """Content hash of a scenario's plant model: the site's plant, the training inputs, the seed,
    the model's hyper-parameters and the source of the simulator and model code.

    Grid intensity is left out (it changes neither the commissioning run nor the telemetry),
    so the grid scenarios of a site share its model.
    """
    from coolshift.models.thermal import LinearPlantModel

    doc = site.model_dump(mode="json", exclude=_NOT_PLANT)
    doc["edge_sites"] = [{k: v for k, v in e.items() if k != "carbon"} for e in doc.get("edge_sites", [])]
    blob = json.dumps({"site": doc, "data": _frame_digest(train_data), "seed": seed, "code": _code_digest(),
                       "model": repr(LinearPlantModel().get_params())}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached_plant_model(site: SiteConfig, train_data: pd.DataFrame, cache_dir: str | Path | None = None,
                       seed: int = EXPLORE_SEED) -> tuple[object, dict]:
    """The scenario site's fitted plant model and how it was obtained.

    Loads ``<cache_dir>/<key>.pkl`` when present, else simulates the commissioning, fits
    and writes it atomically. Returns ``(model, info)``; ``info`` has the key, whether it
    came from the cache, the training period and rows, and the seconds spent.
    """
    from coolshift.io.atomic import write_bytes_atomic

    key = plant_model_key(site, train_data, seed)
    step = train_data.index[1] - train_data.index[0] if len(train_data) > 1 else pd.Timedelta(hours=site.step_h)
    info = {"key": key, "train_start": train_data.index[0].isoformat(),
            "train_end": (train_data.index[-1] + step).isoformat(), "train_rows": int(len(train_data)),
            "explore_seed": seed, "cached": False}
    path = Path(cache_dir) / f"{key}.pkl" if cache_dir is not None else None
    t0 = time.perf_counter()
    if path is not None and path.exists():
        try:
            model = pickle.loads(path.read_bytes())
            check_plant(model, site)  # a cached model of another plant (or of unknown plant) is never used
            info.update(cached=True, seconds=round(time.perf_counter() - t0, 3))
            return model, info
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, PlantMismatchError):
            pass  # unreadable, from older code or of another plant: refit and overwrite
    tel = commissioning_telemetry(site, train_data, seed)
    model = fit_plant_model(site, tel)
    if path is not None:
        write_bytes_atomic(path, pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    info.update(seconds=round(time.perf_counter() - t0, 3), cooling_pieces=int(getattr(model, "n_cooling_pieces_", 0)))
    return model, info
