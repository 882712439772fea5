import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
# Locks and per-device BMS state go to a folder of this test session, never the user's
# ~/.local/state/coolshift: two test runs (or a test run and a real nightly job) must not
# see each other's locks or rate limits. Subprocesses inherit it.
os.environ["COOLSHIFT_STATE_DIR"] = tempfile.mkdtemp(prefix="coolshift-test-state-")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SITES = REPO / "configs" / "sites"
SMALL_SITE = SITES / "sanjose_colo_2mw.yaml"
LARGE_SITE = SITES / "philadelphia_multihall_20mw.yaml"


def shared(rel: str) -> Path:
    """A file from ../shared/data, or skip the test when the workplace data is absent."""
    p = SHARED / rel
    if not p.exists():
        pytest.skip(f"{p} not present (workplace data beside the repo)")
    return p


@pytest.fixture(scope="session")
def small_site_model():
    """San Jose and a LinearPlantModel fitted on four weeks of its explore telemetry (May-June 2022).

    Trained once per session: the closed-loop and warm-start tests plan with the same model.
    """
    from coolshift.config import load_site
    from coolshift.io import load_site_data
    from coolshift.models.thermal import LinearPlantModel
    from coolshift.simulations.engine import simulate
    from coolshift.control.policies import get_policy
    from coolshift.simulations.telemetry import to_telemetry

    site = load_site(SMALL_SITE)
    train = load_site_data(site, "2022-05-15", "2022-06-12")
    res = simulate(site, train, get_policy("explore"))
    tel = to_telemetry(res.timeseries, [z.name for z in site.zones], [p.name for p in site.server_pools])
    return site, LinearPlantModel().fit(tel, site)


class _StandInModel:
    """A registered plant model's stand-in: hand-set coefficients rising with outside temperature."""

    def coefficients(self, site, frame):
        from synthetic import linear_coefficients

        return linear_coefficients(site, frame.index, temp_c=frame["temp_c"].to_numpy())


@pytest.fixture
def registry(monkeypatch):
    """The plant-model registry with ``load_plant_model`` returning :class:`_StandInModel`
    (everything else the real module), for CLI tests that need a model but not its training."""
    import sys
    import types

    import coolshift.models.registry as real

    mod = types.ModuleType("coolshift.models.registry")
    mod.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
    mod.load_plant_model = lambda site, alias="production", **kw: _StandInModel()
    monkeypatch.setitem(sys.modules, "coolshift.models.registry", mod)
    return mod
