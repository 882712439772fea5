"""The fleet LP (issue 21): a hand-solved two-site case, residency never broken, the decomposed
plan within its certified gap of the joint LP (serially and on a real 2-worker Dask
LocalCluster on 127.0.0.1), and bad fleet files refused with exit 2 naming the key."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from typer.testing import CliRunner

from conftest import REPO
from coolshift.cli import app
from coolshift.fleet.rules import RULES, dispatch
from coolshift.optimizer.fleet import (FleetInfeasible, FleetProblem, plan_metrics, price_block, site_blocks, solve_decomposed,
                                       solve_independent, solve_joint)

EXAMPLE = REPO / "configs" / "fleets" / "us4_example.yaml"


def two_sites(gb_per_unit: float, hours: int = 4, units: float = 10.0) -> FleetProblem:
    """Site A at 500 g/kWh, site B at 100 g/kWh; 10 units of batch work arrive at A in hour 0,
    deadline 4 h, one hour to move; 1 kWh per unit, no idle power, no cooling overhead.
    Moving a unit costs 0.1 kg at B plus gb * 0.06 kWh at the mean of 500 and 100 g/kWh
    (0.018 kg per GB) against 0.5 kg at A: it pays exactly when gb < 0.4 / 0.018 = 22.2 GB."""
    return FleetProblem(
        sites=("A", "B"), classes=("job",), kind=("batch",), origin=np.array([0]),
        demand_units=np.array([[units] + [0.0] * (hours - 1)]), gb_per_unit=np.array([gb_per_unit]),
        deadline_h=np.array([4]), allowed=np.array([[True, True]]),
        ci_g_per_kwh=np.array([[500.0] * hours, [100.0] * hours]), price_usd_per_mwh=np.zeros((2, hours)),
        overhead_frac=np.zeros((2, hours)), servers=np.array([100.0, 100.0]), units_per_server=np.array([1.0, 1.0]),
        idle_kw=np.zeros(2), kw_per_unit=np.array([1.0, 1.0]), min_active=np.zeros(2),
        delay_h=np.array([[0, 1], [1, 0]]), usd_per_gb=np.zeros((2, 2)), link_gb_per_h=np.full((2, 2), np.inf))


@pytest.mark.parametrize("gb, at_b, kg", [(20.0, 10.0, 10 * (0.1 + 20 * 0.06 * 0.3)), (22.0, 10.0, 10 * (0.1 + 22 * 0.06 * 0.3)),
                                          (22.5, 0.0, 5.0), (30.0, 0.0, 5.0)])
def test_work_moves_to_the_cleaner_site_exactly_when_the_transfer_energy_pays(gb, at_b, kg):
    plan = solve_joint(two_sites(gb))
    done = plan.done()[0].sum(axis=1)
    assert done[1] == pytest.approx(at_b, abs=1e-6)
    assert done.sum() == pytest.approx(10.0)
    assert plan_metrics(plan)["tco2"] * 1000 == pytest.approx(kg, rel=1e-9)
    if at_b:  # moved work starts only after the one-hour transfer delay
        assert plan.done()[0, 1, 0] == pytest.approx(0.0, abs=1e-9)
        assert plan_metrics(plan)["transfer_mwh"] * 1000 == pytest.approx(10 * gb * 0.06)


def test_a_deadline_shorter_than_the_move_keeps_work_home():
    p = two_sites(1.0)
    p = FleetProblem(**{**p.__dict__, "deadline_h": np.array([1])})
    plan = solve_joint(p)
    assert plan.done()[0, 1].sum() == pytest.approx(0.0, abs=1e-9)
    assert plan.done()[0, 0, 0] == pytest.approx(10.0)


def test_a_site_that_cannot_do_its_own_work_alone_is_diagnosed_and_the_fleet_carries_it():
    p = two_sites(1.0)
    p = FleetProblem(**{**p.__dict__, "servers": np.array([2.0, 100.0])})   # A does 2 units/h: 10 units miss 4 h
    with pytest.raises(FleetInfeasible, match="site A cannot do its own work"):
        solve_independent(p)
    plan = solve_joint(p)
    assert plan.done()[0, 1].sum() == pytest.approx(10.0)                  # B is cleaner anyway
    dec = solve_decomposed(p, gap_tol=1e-6)                                 # starts without the alone plan
    assert dec.objective == pytest.approx(plan.objective, rel=1e-6)


def _random_fleet(seed: int, s_n: int = 3, hours: int = 24) -> FleetProblem:
    rng = np.random.default_rng(seed)
    c_n = 2 * s_n
    kind = tuple("batch" if c % 2 == 0 else "interactive" for c in range(c_n))
    origin = np.repeat(np.arange(s_n), 2)
    allowed = rng.random((c_n, s_n)) < 0.6
    allowed[np.arange(c_n), origin] = True
    return FleetProblem(
        sites=tuple(f"s{i}" for i in range(s_n)), classes=tuple(f"c{i}" for i in range(c_n)), kind=kind, origin=origin,
        demand_units=rng.uniform(5, 40, (c_n, hours)), gb_per_unit=rng.uniform(0, 2, c_n),
        deadline_h=np.where(np.array(kind) == "batch", rng.integers(3, 12, c_n), 0), allowed=allowed,
        ci_g_per_kwh=rng.uniform(50, 700, (s_n, hours)), price_usd_per_mwh=rng.uniform(20, 200, (s_n, hours)),
        overhead_frac=rng.uniform(0.05, 0.4, (s_n, hours)), servers=np.full(s_n, 120.0), units_per_server=np.ones(s_n),
        idle_kw=np.full(s_n, 0.12), kw_per_unit=np.full(s_n, 0.36), min_active=np.full(s_n, 10.0),
        delay_h=np.ones((s_n, s_n), dtype=int) - np.eye(s_n, dtype=int), usd_per_gb=np.full((s_n, s_n), 0.02),
        link_gb_per_h=np.full((s_n, s_n), 30.0))


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_residency_is_never_broken_by_the_plan_or_the_rules(seed):
    p = _random_fleet(seed)
    plan = solve_joint(p)
    forbidden = ~p.allowed
    assert np.all(plan.routed()[forbidden] <= 1e-9) and np.all(plan.done()[forbidden] <= 1e-9)
    # every unit of work is served, batch within its deadline window of the horizon
    assert plan.done().sum(axis=(1, 2)) == pytest.approx(p.demand_units.sum(axis=1), rel=1e-7)
    for rule in RULES:
        assert np.all(dispatch(p, rule)["routed"][forbidden] == 0.0), rule


def test_residency_in_the_example_fleet():
    from coolshift.fleet.usecase import load_inputs

    inp = load_inputs(EXAMPLE)
    p = inp.problem
    ny = p.classes.index("newyork_batch")
    assert [p.sites[s] for s in np.flatnonzero(p.allowed[ny])] == ["newyork", "philadelphia"]
    plan = solve_joint(p)
    routed = plan.routed()
    assert routed[ny][[p.sites.index("sanjose"), p.sites.index("dallas")]].sum() == 0.0
    # interactive work stays within 40 ms: San Jose's web work is never served on the east coast
    web = p.classes.index("sanjose_web")
    assert routed[web][[p.sites.index("newyork"), p.sites.index("philadelphia")]].sum() == 0.0
    assert plan_metrics(plan)["tco2"] < plan_metrics(solve_independent(p))["tco2"]


@pytest.mark.parametrize("seed", [1, 7])
def test_the_decomposed_plan_is_within_its_certified_gap_of_the_joint_lp(seed):
    p = _random_fleet(seed)
    joint = solve_joint(p)
    dec = solve_decomposed(p, max_iter=15)
    assert dec.lower_bound <= joint.objective * (1 + 1e-7)          # the bound is a bound
    assert dec.objective >= joint.objective * (1 - 1e-7)            # the plan is feasible, so no better
    assert dec.objective - joint.objective <= dec.certified_gap * dec.objective + 1e-6
    # the decomposed plan meets the shared constraints
    assert dec.routed().sum(axis=1) == pytest.approx(p.demand_units, rel=1e-6, abs=1e-6)


def test_daily_routing_shares_decompose_to_the_certified_target_gap():
    """With routing shares per 12-hour block the decomposition closes to its 0.5 % target,
    and the joint LP lies between its bounds."""
    import dataclasses

    p = dataclasses.replace(_random_fleet(3, s_n=4), routing_block_h=12)
    joint = solve_joint(p)
    dec = solve_decomposed(p, gap_tol=5e-3, max_iter=200)
    assert dec.certified_gap <= 5e-3
    assert dec.lower_bound <= joint.objective * (1 + 1e-7) <= dec.objective * (1 + 2e-7)
    blk = np.arange(p.hours) // 12
    assert dec.shares().sum(axis=1) == pytest.approx(np.ones((len(p.classes), 2)), abs=1e-6)
    assert dec.routed().sum(axis=1) == pytest.approx(p.demand_units, rel=1e-6)
    assert np.all(dec.routed()[~p.allowed] <= 1e-9)
    del blk


def test_decomposed_on_a_two_worker_dask_cluster_matches_the_hand_solution():
    from coolshift.fleet.engine import DaskSites, dask_client

    p = two_sites(20.0)
    with dask_client(workers=2) as client, DaskSites(client) as sites:
        dec = solve_decomposed(p, map_fn=sites.map, map_blocks=sites.scatter, gap_tol=1e-6)
    assert dec.certified_gap <= 1e-6
    assert dec.objective == pytest.approx(4.6, rel=1e-6)
    assert dec.done()[0, 1].sum() == pytest.approx(10.0)


def test_a_site_solve_depends_on_its_arguments_only():
    """The same pricing call gives the same plan whatever was solved before it (no state kept
    between calls), so any worker may take any site."""
    p = _random_fleet(5, s_n=3)
    blocks = site_blocks(p)
    lam = np.linspace(0.0, 2.0, blocks[0].link_col.size)
    first = price_block(blocks[0], lam)
    price_block(blocks[0], None, np.full(blocks[0].link_col.size, 1.0 / p.n_sites))     # a fixed-routing solve between
    price_block(blocks[1], np.ones(blocks[1].link_col.size))
    again = price_block(blocks[0], lam)
    assert again[0] == first[0] and again[1] == first[1]
    assert np.array_equal(again[2], first[2])


def test_decomposition_runs_the_same_rounds_on_one_and_two_workers():
    """Stateless site solves: one worker and two run the same iterations to the same plan (the
    speed-up in bench_fleet compares equal work)."""
    import dataclasses

    from coolshift.fleet.engine import DaskSites, dask_client

    p = dataclasses.replace(_random_fleet(3, s_n=4), routing_block_h=12)
    runs = {}
    for w in (1, 2):
        with dask_client(workers=w) as client, DaskSites(client) as sites:
            runs[w] = solve_decomposed(p, map_fn=sites.map, map_blocks=sites.scatter, gap_tol=5e-3, max_iter=200)
    serial = solve_decomposed(p, gap_tol=5e-3, max_iter=200)
    assert runs[1].certified_gap <= 5e-3
    assert len(runs[1].log.rows) == len(runs[2].log.rows) == len(serial.log.rows) > 5
    assert runs[1].objective == runs[2].objective == serial.objective
    for a, b in zip(runs[1].z, runs[2].z):
        assert np.array_equal(a, b)


def test_site_blocks_reach_a_worker_that_joins_later():
    """The blocks travel by worker plugin: a worker started after they were sent gets them."""
    from coolshift.fleet.engine import DaskSites, dask_client

    p = _random_fleet(3, s_n=3)
    with dask_client(workers=1) as client, DaskSites(client) as sites:
        keys = sites.scatter(site_blocks(p))
        client.cluster.scale(2)
        client.wait_for_workers(2, timeout=60)
        new = sorted(client.scheduler_info()["workers"])[-1]
        held = client.run(lambda dask_worker: sorted(k for pl in dask_worker.plugins.values()
                                                     for k in getattr(pl, "blocks", {})), workers=[new])
        assert held[new] == sorted(keys)


def test_bad_fleet_files_exit_2_naming_the_key(tmp_path):
    text = EXAMPLE.read_text().replace("origin: dallas, units_per_h: 900", "origin: austin, units_per_h: 900")
    (tmp_path / "fleet.yaml").write_text(text.replace("../../data", str(REPO / "data")))
    res = CliRunner().invoke(app, ["fleet", "plan", "--fleet", str(tmp_path / "fleet.yaml"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "workloads.7.origin" in res.output and "austin" in res.output and "Traceback" not in res.output
    text2 = EXAMPLE.read_text().replace("cloud_region: us-east-2", "cloud_region: mars-north-1")
    (tmp_path / "fleet2.yaml").write_text(text2.replace("../../data", str(REPO / "data")))
    res = CliRunner().invoke(app, ["fleet", "plan", "--fleet", str(tmp_path / "fleet2.yaml"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "sites.1.cloud_region" in res.output and "mars-north-1" in res.output


def test_cli_plan_writes_the_plan(tmp_path):
    res = CliRunner().invoke(app, ["fleet", "plan", "--fleet", str(EXAMPLE), "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    import json
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["method"] == "joint" and s["sites"] == 4 and s["transfer_mwh"] > 0
    assert (tmp_path / "plan_hourly.csv").exists() and (tmp_path / "routing.csv").exists()
