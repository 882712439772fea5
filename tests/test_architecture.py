"""The layers hold: import-linter's contracts (pyproject.toml, [tool.importlinter]) pass.

import-linter walks one package folder, but ``coolshift``'s subpackages live in the
top-level folders ``models/``, ``optimizer/``, ``simulations/`` and ``control/``
(setuptools ``package-dir``). The test lays the package out as it installs (the
mapping read from pyproject.toml) in a temporary folder and lints that copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO

LINT = Path(sys.executable).with_name("lint-imports")


def _installed_layout(dest: Path) -> Path:
    """Copy the repo's packages into ``dest`` as they are installed (``package-dir`` applied)."""
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = cfg["package-dir"]
    for pkg in sorted(cfg["packages"], key=len):
        parts = pkg.split(".")
        src = None
        for i in range(len(parts), 0, -1):  # the longest mapped prefix decides where it lives
            prefix = ".".join(parts[:i])
            if prefix in mapping:
                src = REPO / mapping[prefix] / Path(*parts[i:])
                break
        target = dest / Path(*parts)
        target.mkdir(parents=True, exist_ok=True)
        for f in src.glob("*.py"):
            shutil.copy2(f, target / f.name)
    return dest


def _lint(tmp_path: Path, config: Path) -> subprocess.CompletedProcess:
    root = _installed_layout(tmp_path / "site")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), str(config), "--no-cache"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_contracts_hold(tmp_path):
    res = _lint(tmp_path, REPO / "pyproject.toml")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "BROKEN" not in res.stdout and "KEPT" in res.stdout


def test_the_contracts_catch_an_optimiser_that_imports_the_simulator(tmp_path):
    """The check can fail: the same contracts on a copy where the optimiser imports the simulator."""
    root = _installed_layout(tmp_path / "site")
    bad = root / "coolshift" / "optimizer" / "plan.py"
    bad.write_text(bad.read_text() + "\nfrom coolshift.simulations import engine as _engine  # noqa\n")
    env = {**os.environ, "PYTHONPATH": str(root)}
    res = subprocess.run([str(LINT), str(REPO / "pyproject.toml"), "--no-cache"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "coolshift.optimizer.plan -> coolshift.simulations.engine" in res.stdout


@pytest.mark.parametrize("folder", ["optimizer", "models", "simulations"])
def test_no_layer_below_the_loop_imports_it(folder):
    """The plain text check of the issue: nothing below the closed loop names it in an import."""
    for f in (REPO / folder).glob("*.py"):
        for line in f.read_text().splitlines():
            s = line.strip()
            if s.startswith(("import ", "from ")):
                assert "coolshift.control" not in s, f"{f.name}: {s}"
                if folder == "optimizer":
                    assert "simulations" not in s, f"{f.name}: {s}"


def test_the_cli_loads_no_heavy_library_until_a_command_runs():
    """`coolshift --help` must stay fast: the command modules import the optimiser, the
    forecasters (scikit-learn), MLflow and matplotlib inside their commands, not at import."""
    code = ("import sys, coolshift.cli; heavy = [m for m in ('sklearn', 'mlflow', 'matplotlib', 'pyomo', 'highspy', "
            "'distributed', 'coolshift.optimizer.solve', 'coolshift.control.live') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
