import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

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
