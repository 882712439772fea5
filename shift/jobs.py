"""Job-level carbon-aware scheduling: when should each job in a batch run to emit least?

A job has a release time, a deadline, a duration [h] and a power draw [kW]. Time is cut
into slots (default 30 min) on the grid of the intensity series; a job may only use
slots that lie wholly inside [release, deadline].

- Non-interruptible jobs run in one contiguous block that starts on a slot boundary.
  With ``n_full`` whole slots and a remainder ``rem_h`` the block runs ``slot_h`` in each
  of its first ``n_full`` slots and ``rem_h`` in the last one.
- Interruptible jobs run any fraction of any slot in their window; the hours add up to
  the duration.
- Energy in a slot [kWh] = power_kw x hours run in that slot; emissions [kgCO2] =
  energy x intensity [gCO2/kWh] / 1000.

Without a capacity limit the jobs are independent and the exact optimum is computed
vectorised here (sliding-window sums for blocks, the cheapest slots for interruptible
jobs). With a capacity limit the jobs compete; :mod:`coolshift.shift.capacity`
solves that as a Pyomo MILP/LP with HiGHS (:func:`coolshift.shift.solve.solve_runs` picks
the method), and :func:`greedy_schedule` gives the one-job-at-a-time answer a per-job
"best window" query would give, for comparison.

Capacity rule: a contiguous job counts its full ``power_kw`` in every slot it touches
(its partial last slot starts at the slot start, so it overlaps everything else in that
slot); an interruptible job counts ``power_kw x fraction of the slot it runs`` (slot-
average power), so interruptible jobs may share a slot in time.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coolshift.schema import CARBON_GCO2_PER_KWH

__all__ = [
    "JobsError",
    "SolverStopped",
    "Schedule",
    "ShiftProblem",
    "read_jobs",
    "validate_jobs",
    "resample_intensity",
    "prepare",
    "greedy_schedule",
    "independent_schedule",
    "greedy_runs",
    "make_schedule",
]

REQUIRED_COLUMNS = ("job_id", "release", "deadline", "duration_h", "power_kw")
OPTIONAL_COLUMNS = ("interruptible", "baseline_start")
# a time of day followed by Z or an offset (a bare date such as 2024-01-01 is naive)
_TZ_SUFFIX = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)$",
                        re.IGNORECASE)
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f", ""}
_EPS_H = 1e-9  # tolerance on hours when counting whole slots
_KG_PER_G = 1e-3


class JobsError(ValueError):
    """Bad job table or intensity input; the message names the file, row and column."""


class SolverStopped(RuntimeError):
    """HiGHS stopped without a feasible schedule and without showing that none exists
    (``time_limit``: its time limit; otherwise another stop). Not bad input."""

    def __init__(self, message: str, time_limit: bool):
        super().__init__(message)
        self.time_limit = time_limit


# --------------------------------------------------------------------------- jobs input
def read_jobs(path: str | Path) -> pd.DataFrame:
    """Read and validate a jobs CSV (``job_id, release, deadline, duration_h, power_kw``
    plus optional ``interruptible`` and ``baseline_start``)."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise JobsError(f"{path}: no such jobs file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise JobsError(f"{path}: not a readable CSV ({exc})") from None
    return validate_jobs(raw, source=str(path))


def _parse_times(values: pd.Series, column: str, bad: list[tuple[int, str]]) -> pd.Series:
    """ISO 8601 with an offset or ``Z`` -> UTC; naive or unparseable entries are errors."""
    if pd.api.types.is_datetime64_any_dtype(values):
        if getattr(values.dt, "tz", None) is None:
            for i in range(len(values)):
                bad.append((i, f"{column} has no UTC offset (give e.g. 'Z' or '+01:00')"))
            return pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
        return values.dt.tz_convert("UTC")
    text = values.astype(str).str.strip()
    parsed = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    unparsed = parsed.isna().to_numpy()
    naive = ~unparsed & ~text.str.contains(_TZ_SUFFIX).to_numpy()
    for i in np.flatnonzero(unparsed):
        bad.append((int(i), f"{column} {text.iat[i]!r} is not an ISO 8601 timestamp"))
    for i in np.flatnonzero(naive):
        bad.append((int(i), f"{column} {text.iat[i]!r} has no UTC offset (give e.g. 'Z' or "
                            "'+01:00')"))
    return parsed


def _parse_numbers(values: pd.Series, column: str, bad: list[tuple[int, str]]) -> pd.Series:
    num = pd.to_numeric(values, errors="coerce").astype(float)
    for i in np.flatnonzero(~np.isfinite(num.to_numpy())):
        bad.append((int(i), f"{column} {values.iat[i]!r} is not a finite number"))
    return num


def validate_jobs(frame: pd.DataFrame, source: str = "jobs") -> pd.DataFrame:
    """Check a raw job table and return it typed: UTC timestamps, float hours and kW,
    bool ``interruptible`` (``<NA>`` when the column is absent), in input order.

    Every bad row is reported (up to 20) with its row number (1-based data row; the
    CSV line is one more, for the header) and ``job_id``.
    """
    cols = {c: str(c).strip() for c in frame.columns}
    frame = frame.rename(columns=cols)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise JobsError(f"{source}: missing column(s) {missing}; need {list(REQUIRED_COLUMNS)}")
    if len(frame) == 0:
        raise JobsError(f"{source}: no jobs")
    frame = frame.reset_index(drop=True)
    bad: list[tuple[int, str]] = []
    ids = frame["job_id"].astype(str).str.strip()
    for i in np.flatnonzero((ids == "").to_numpy()):
        bad.append((int(i), "job_id is empty"))
    dup = ids.duplicated(keep="first") & (ids != "")
    for i in np.flatnonzero(dup.to_numpy()):
        bad.append((int(i), f"job_id {ids[i]!r} repeats an earlier row"))
    release = _parse_times(frame["release"], "release", bad)
    deadline = _parse_times(frame["deadline"], "deadline", bad)
    duration = _parse_numbers(frame["duration_h"], "duration_h", bad)
    power = _parse_numbers(frame["power_kw"], "power_kw", bad)
    for i in np.flatnonzero((duration <= 0).to_numpy()):
        bad.append((int(i), f"duration_h {duration[i]} must be > 0"))
    for i in np.flatnonzero((power < 0).to_numpy()):
        bad.append((int(i), f"power_kw {power[i]} is negative"))
    span_h = (deadline - release).dt.total_seconds() / 3600.0
    short = (span_h + _EPS_H < duration).to_numpy() & np.isfinite(span_h.to_numpy())
    for i in np.flatnonzero(short):
        bad.append((int(i), f"deadline {deadline[i].isoformat()} is before release "
                            f"{release[i].isoformat()} + duration {duration[i]} h"))
    out = pd.DataFrame({"job_id": ids, "release": release, "deadline": deadline,
                        "duration_h": duration, "power_kw": power})
    if "interruptible" in frame.columns:
        flags = frame["interruptible"]
        if pd.api.types.is_bool_dtype(flags):
            out["interruptible"] = flags.astype("boolean")
        else:
            text = flags.astype(str).str.strip().str.lower()
            unknown = ~text.isin(_TRUE | _FALSE)
            for i in np.flatnonzero(unknown.to_numpy()):
                bad.append((int(i), f"interruptible {flags[i]!r} is not true/false"))
            out["interruptible"] = text.isin(_TRUE).astype("boolean")
            out.loc[text == "", "interruptible"] = pd.NA
    else:
        out["interruptible"] = pd.array([pd.NA] * len(out), dtype="boolean")
    if "baseline_start" in frame.columns:
        given = frame["baseline_start"].astype(str).str.strip() != ""
        base = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[ns, UTC]")
        if given.any():
            sub_bad: list[tuple[int, str]] = []
            parsed = _parse_times(frame["baseline_start"][given], "baseline_start", sub_bad)
            pos = np.flatnonzero(given.to_numpy())
            bad.extend((int(pos[i]), msg) for i, msg in sub_bad)
            base[given] = parsed.to_numpy()
        base = base.fillna(release)
        outside = ((base < release) | (base + pd.to_timedelta(duration, unit="h") > deadline))
        for i in np.flatnonzero(outside.to_numpy() & given.to_numpy()):
            bad.append((int(i), f"baseline_start {base[i].isoformat()} + duration does not lie "
                                "within [release, deadline]"))
        out["baseline_start"] = base
    else:
        out["baseline_start"] = release
    if bad:
        raise JobsError(_format_bad(source, bad, ids))
    return out


def _format_bad(source: str, bad: list[tuple[int, str]], ids: pd.Series) -> str:
    bad = sorted(bad, key=lambda b: b[0])
    lines = [f"  row {i + 1} (line {i + 2}, job_id {ids[i]!r}): {msg}" for i, msg in bad[:20]]
    more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
    return f"{source}: {len(bad)} bad job row(s)\n" + "\n".join(lines) + more


# ---------------------------------------------------------------------- intensity input
def resample_intensity(intensity: pd.Series | pd.DataFrame, slot: str = "30min",
                       max_gap: str = "3h") -> pd.Series:
    """Carbon intensity [gCO2/kWh] per slot: the time-weighted mean over each slot.

    Each reading is taken to hold from its stamp until the next one (the LWA and ENTSO-E
    values are period averages stamped at the period start), so files that mix steps
    (GB: 30 min then 15 min) or miss a stamp (DE: two 30-min steps) are weighted by the
    time each value holds, not by how many readings fall in the slot. The last reading
    holds for the file's most common step. A gap longer than ``max_gap`` is an error.
    Slots are aligned to midnight UTC.
    """
    s = intensity[CARBON_GCO2_PER_KWH] if isinstance(intensity, pd.DataFrame) else intensity
    s = pd.Series(s, dtype=float).dropna()
    if not isinstance(s.index, pd.DatetimeIndex) or s.index.tz is None:
        raise JobsError("intensity: index must be a tz-aware DatetimeIndex")
    s = s.tz_convert("UTC").sort_index()
    s.index = s.index.as_unit("ns")
    s = s[~s.index.duplicated(keep="first")]
    if len(s) < 2:
        raise JobsError("intensity: need at least two readings")
    slot_td = pd.Timedelta(slot)
    steps = s.index.to_series().diff().dropna()
    gap = steps[steps > pd.Timedelta(max_gap)]
    if len(gap):
        raise JobsError(f"intensity: gap of {gap.iloc[0]} before {gap.index[0].isoformat()} "
                        f"(longer than {max_gap})")
    base = steps.mode().iloc[0]
    # finest grid that holds every stamp and every slot boundary
    unit = pd.Timedelta(np.gcd.reduce(np.r_[steps.dt.total_seconds().astype(np.int64),
                                           int(slot_td.total_seconds()),
                                           s.index.asi8 // 10**9 % 86400]), unit="s")
    if unit <= pd.Timedelta(0):
        unit = pd.Timedelta("1min")
    grid = pd.date_range(s.index[0], s.index[-1] + base, freq=unit, inclusive="left")
    fine = s.reindex(grid, method="ffill")
    out = fine.resample(slot_td, origin="start_day").mean()
    # only whole slots: drop a first/last slot the data covers partly
    counts = fine.resample(slot_td, origin="start_day").count()
    full = counts == int(slot_td / unit)
    out = out[full]
    out.index.name = "timestamp"
    out.name = CARBON_GCO2_PER_KWH
    return out


# ------------------------------------------------------------------------------ problem
@dataclass(frozen=True)
class ShiftProblem:
    """Jobs mapped onto the slot grid: integer slot indices, hours, kW (all numpy)."""

    slots: pd.DatetimeIndex        # slot starts, UTC
    slot_h: float                  # slot length [h]
    actual: np.ndarray             # actual intensity per slot [gCO2/kWh]
    jobs: pd.DataFrame             # validated job table (input order)
    power_kw: np.ndarray
    duration_h: np.ndarray
    first: np.ndarray              # first usable slot (release rounded up)
    stop: np.ndarray               # one past the last usable slot (deadline rounded down)
    baseline: np.ndarray           # slot where the job starts without shifting
    n_full: np.ndarray             # whole slots of running
    rem_h: np.ndarray              # hours run in a final partial slot (0 if none)
    interruptible: np.ndarray      # bool per job

    @property
    def n_jobs(self) -> int:
        return len(self.power_kw)

    @property
    def n_slots(self) -> np.ndarray:
        """Slots a contiguous block touches."""
        return self.n_full + (self.rem_h > 0)


def prepare(jobs: pd.DataFrame, intensity: pd.Series | pd.DataFrame, slot: str = "30min",
            interruptible: bool | None = None, source: str = "jobs") -> ShiftProblem:
    """Map validated jobs onto the slot grid of the resampled intensity.

    ``interruptible`` is the default for jobs whose column is empty or absent
    (``None`` = not interruptible); ``source`` names the jobs in error messages.
    """
    jobs = validate_jobs(jobs, source)  # idempotent on a validated table
    per_slot = resample_intensity(intensity, slot)
    slots = per_slot.index.as_unit("ns")
    slot_td = pd.Timedelta(slot)
    slot_h = slot_td / pd.Timedelta("1h")
    ends = slots + slot_td
    first = np.searchsorted(slots.asi8, _ns(jobs["release"]), "left")
    stop = np.searchsorted(ends.asi8, _ns(jobs["deadline"]), "right")
    base = np.searchsorted(slots.asi8, _ns(jobs["baseline_start"]),
                           "left")
    duration = jobs["duration_h"].to_numpy(float)
    n_full = np.floor(duration / slot_h + _EPS_H).astype(np.int64)
    rem = duration - n_full * slot_h
    rem[rem < _EPS_H] = 0.0
    need = n_full + (rem > 0)
    default = bool(interruptible) if interruptible is not None else False
    flags = jobs["interruptible"].fillna(default).to_numpy(bool)
    bad: list[tuple[int, str]] = []
    lo, hi = slots[0], ends[-1]
    outside = (_ns(jobs["release"]) < lo.value) | (_ns(jobs["deadline"]) > hi.value)
    short = ~outside & (stop - first < need)
    no_base = ~outside & ~short & ((base < first) | (base + need > stop))
    for i in np.flatnonzero(outside):
        r, d = jobs["release"].iat[i], jobs["deadline"].iat[i]
        bad.append((i, f"window {r.isoformat()} .. {d.isoformat()} is outside the intensity "
                       f"data ({lo.isoformat()} .. {hi.isoformat()})"))
    for i in np.flatnonzero(short):
        bad.append((i, f"window holds {max(stop[i] - first[i], 0)} whole {slot} slot(s) "
                       f"after aligning to slot boundaries; the job needs {need[i]}"))
    for i in np.flatnonzero(no_base):
        bad.append((i, "baseline start does not fit the window after aligning to slots"))
    if bad:
        raise JobsError(_format_bad(source, bad, jobs["job_id"].astype(str)))
    return ShiftProblem(slots=slots, slot_h=float(slot_h), actual=per_slot.to_numpy(float),
                        jobs=jobs.reset_index(drop=True),
                        power_kw=jobs["power_kw"].to_numpy(float), duration_h=duration,
                        first=first.astype(np.int64), stop=stop.astype(np.int64),
                        baseline=base.astype(np.int64), n_full=n_full, rem_h=rem,
                        interruptible=flags)


def _ns(times: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds (pandas may store them in other units)."""
    return times.dt.tz_convert("UTC").dt.as_unit("ns").array.asi8


# ----------------------------------------------------------------------------- schedule
@dataclass(frozen=True)
class Schedule:
    """Where each job runs, and what it emits on the actual intensity.

    ``table``: one row per job: ``job_id, release, deadline, start, end, interruptible,
    slots_used, run_h, energy_kwh, kgco2_shifted, kgco2_unshifted, late, slots`` (the
    starts of the slots used, ``;``-separated). ``runs``: one row per (job, slot)
    with the hours run, ``job_id, slot_start, run_h``.
    """

    table: pd.DataFrame
    runs: pd.DataFrame
    method: str
    solve_time_s: float
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        base = float(self.table["kgco2_unshifted"].sum())
        shifted = float(self.table["kgco2_shifted"].sum())
        return {
            "jobs": int(len(self.table)),
            "baseline_kgco2": base,
            "shifted_kgco2": shifted,
            "savings_pct": 100.0 * (base - shifted) / base if base > 0 else 0.0,
            "late_jobs": int(self.table["late"].sum()),
            "energy_kwh": float(self.table["energy_kwh"].sum()),
            "method": self.method,
            "solve_time_s": self.solve_time_s,
            **self.info,
        }


def _block_runs(prob: ShiftProblem, jobs: np.ndarray, starts: np.ndarray):
    """(job, slot, hours) arrays for contiguous blocks starting at ``starts``."""
    n = prob.n_slots[jobs]
    job = np.repeat(jobs, n)
    offset = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    slot = np.repeat(starts, n) + offset
    hours = np.where(offset < np.repeat(prob.n_full[jobs], n), prob.slot_h,
                     np.repeat(prob.rem_h[jobs], n))
    return job, slot, hours


def _kg(prob: ShiftProblem, job: np.ndarray, slot: np.ndarray, hours: np.ndarray,
        intensity: np.ndarray) -> np.ndarray:
    """kgCO2 per job of the runs, on ``intensity`` [gCO2/kWh]."""
    g = prob.power_kw[job] * hours * intensity[slot]
    return np.bincount(job, weights=g, minlength=prob.n_jobs) * _KG_PER_G


def make_schedule(prob: ShiftProblem, job: np.ndarray, slot: np.ndarray, hours: np.ndarray,
                  method: str, solve_time_s: float, info: dict | None = None,
                  unplaced: np.ndarray | None = None) -> Schedule:
    """Assemble a :class:`Schedule` from runs; emissions counted on actual intensity.

    ``unplaced`` jobs (a heuristic found no room) are charged at their baseline and
    flagged late.
    """
    keep = hours > _EPS_H
    job, slot, hours = job[keep], slot[keep], hours[keep]
    unplaced = np.zeros(prob.n_jobs, bool) if unplaced is None else unplaced
    if unplaced.any():
        uj = np.flatnonzero(unplaced)
        bj, bs, bh = _block_runs(prob, uj, prob.baseline[uj])
        job, slot, hours = np.r_[job, bj], np.r_[slot, bs], np.r_[hours, bh]
    order = np.lexsort((slot, job))
    job, slot, hours = job[order], slot[order], hours[order]
    slot_ns = prob.slots.asi8
    bj, bs, bh = _block_runs(prob, np.arange(prob.n_jobs), prob.baseline)
    run_h = np.bincount(job, weights=hours, minlength=prob.n_jobs)
    used = np.bincount(job, minlength=prob.n_jobs)
    start_ns = np.full(prob.n_jobs, np.iinfo(np.int64).max)
    np.minimum.at(start_ns, job, slot_ns[slot])
    end_ns = np.zeros(prob.n_jobs, np.int64)
    np.maximum.at(end_ns, job, slot_ns[slot] + np.round(hours * 3600e9).astype(np.int64))
    jobs = prob.jobs
    deadline_ns = _ns(jobs["deadline"])
    late = unplaced | (end_ns > deadline_ns) | (np.abs(run_h - prob.duration_h) > 1e-6)
    stamps = pd.Series(prob.slots[slot].strftime("%Y-%m-%dT%H:%MZ"))
    slots_list = stamps.groupby(job).agg(";".join)
    table = pd.DataFrame({
        "job_id": jobs["job_id"].to_numpy(),
        "release": jobs["release"].to_numpy(),
        "deadline": jobs["deadline"].to_numpy(),
        "start": pd.to_datetime(start_ns, utc=True),
        "end": pd.to_datetime(end_ns, utc=True),
        "interruptible": prob.interruptible,
        "slots_used": used,
        "run_h": run_h,
        "energy_kwh": prob.power_kw * run_h,
        "kgco2_shifted": _kg(prob, job, slot, hours, prob.actual),
        "kgco2_unshifted": _kg(prob, bj, bs, bh, prob.actual),
        "late": late,
        "slots": slots_list.reindex(np.arange(prob.n_jobs)).fillna("").to_numpy(),
    })
    runs = pd.DataFrame({"job_id": jobs["job_id"].to_numpy()[job],
                         "slot_start": prob.slots[slot], "run_h": hours})
    return Schedule(table=table, runs=runs, method=method, solve_time_s=solve_time_s,
                    info=dict(info or {}))


# ------------------------------------------------------------------ independent (exact)
_CHUNK_CELLS = 4_000_000  # jobs x window cells per vectorised chunk (~32 MB of float64)


def _chunks(lengths: np.ndarray):
    """Index chunks of jobs such that n_jobs x max window stays under _CHUNK_CELLS."""
    order = np.argsort(lengths, kind="stable")
    i = 0
    while i < len(order):
        j = i + 1
        while j < len(order) and (j - i + 1) * lengths[order[j]] <= _CHUNK_CELLS:
            j += 1
        yield order[i:j]
        i = j


def block_costs(prob: ShiftProblem, jobs: np.ndarray, decision: np.ndarray):
    """Per-job matrix of the decision-intensity cost of each block start [g/kW].

    Returns ``(starts, cost)`` of shape (len(jobs), max candidates); invalid cells have
    cost ``inf``. cost = slot_h x (sum of the n_full whole slots) + rem_h x next slot,
    from cumulative sums, so it is O(1) per candidate.
    """
    csum = np.r_[0.0, np.cumsum(decision)]
    padded = np.r_[decision, 0.0]
    n_cand = prob.stop[jobs] - prob.n_slots[jobs] - prob.first[jobs] + 1
    width = int(n_cand.max())
    starts = prob.first[jobs][:, None] + np.arange(width)[None, :]
    valid = np.arange(width)[None, :] < n_cand[:, None]
    starts = np.where(valid, starts, prob.first[jobs][:, None])
    nf = prob.n_full[jobs][:, None]
    cost = prob.slot_h * (csum[starts + nf] - csum[starts]) + prob.rem_h[jobs][:, None] * \
        padded[starts + nf]
    return starts, np.where(valid, cost, np.inf)


def _best_blocks(prob: ShiftProblem, jobs: np.ndarray, decision: np.ndarray) -> np.ndarray:
    best = np.empty(len(jobs), np.int64)
    n_cand = prob.stop[jobs] - prob.n_slots[jobs] - prob.first[jobs] + 1
    for idx in _chunks(n_cand):
        starts, cost = block_costs(prob, jobs[idx], decision)
        best[idx] = starts[np.arange(len(idx)), np.argmin(cost, axis=1)]  # earliest on ties
    return best


def _best_slots(prob: ShiftProblem, jobs: np.ndarray, decision: np.ndarray):
    """Cheapest slots of each interruptible job: n_full whole + rem_h in the next."""
    out_j, out_s, out_h = [], [], []
    width_all = prob.stop[jobs] - prob.first[jobs]
    for idx in _chunks(width_all):
        jj = jobs[idx]
        width = int(width_all[idx].max())
        slots = prob.first[jj][:, None] + np.arange(width)[None, :]
        valid = np.arange(width)[None, :] < width_all[idx][:, None]
        vals = np.where(valid, decision[np.where(valid, slots, 0)], np.inf)
        order = np.argsort(vals, axis=1, kind="stable")  # earliest on ties
        ranked = np.take_along_axis(slots, order, axis=1)
        rank = np.arange(width)[None, :]
        hours = np.where(rank < prob.n_full[jj][:, None], prob.slot_h,
                         np.where(rank == prob.n_full[jj][:, None], prob.rem_h[jj][:, None], 0.0))
        take = hours > 0
        out_j.append(np.broadcast_to(jj[:, None], take.shape)[take])
        out_s.append(ranked[take])
        out_h.append(hours[take])
    if not out_j:
        return (np.array([], np.int64),) * 2 + (np.array([]),)
    return np.concatenate(out_j), np.concatenate(out_s), np.concatenate(out_h)


def independent_runs(prob: ShiftProblem, decision: np.ndarray, mask: np.ndarray | None = None):
    """Exact optimum of each job on its own (no capacity limit): runs as arrays."""
    mask = np.ones(prob.n_jobs, bool) if mask is None else mask
    block = np.flatnonzero(mask & ~prob.interruptible)
    split = np.flatnonzero(mask & prob.interruptible)
    parts = []
    if len(block):
        parts.append(_block_runs(prob, block, _best_blocks(prob, block, decision)))
    if len(split):
        parts.append(_best_slots(prob, split, decision))
    if not parts:
        return np.array([], np.int64), np.array([], np.int64), np.array([])
    return tuple(np.concatenate(p) for p in zip(*parts))


def independent_schedule(prob: ShiftProblem, decision: np.ndarray | None = None) -> Schedule:
    decision = prob.actual if decision is None else decision
    t0 = time.perf_counter()
    job, slot, hours = independent_runs(prob, decision)
    dt = time.perf_counter() - t0
    return make_schedule(prob, job, slot, hours, "independent-exact", dt)


# --------------------------------------------------------------------------- capacity
def slot_load_kw(prob: ShiftProblem, job: np.ndarray, slot: np.ndarray, hours: np.ndarray):
    """Load per slot [kW] under the capacity rule in the module docstring."""
    frac = np.where(prob.interruptible[job], hours / prob.slot_h, 1.0)
    return np.bincount(slot, weights=prob.power_kw[job] * frac, minlength=len(prob.slots))


def capacity_array(prob: ShiftProblem, capacity_kw: float | np.ndarray) -> np.ndarray:
    cap = np.broadcast_to(np.asarray(capacity_kw, float), (len(prob.slots),)).copy()
    if np.any(cap < 0):
        raise JobsError("capacity_kw must be >= 0")
    return cap


def greedy_runs(prob: ShiftProblem, capacity_kw: float | np.ndarray,
                decision: np.ndarray | None = None):
    """One job at a time, in release order (ties: input order), each taking its own
    cleanest feasible block or slots given the capacity the earlier jobs left: what
    answering a per-job "best window" query as jobs arrive gives. Returns
    ``(job, slot, hours, unplaced)``; a job that finds no room is left unplaced."""
    decision = prob.actual if decision is None else decision
    left = capacity_array(prob, capacity_kw)
    order = np.lexsort((np.arange(prob.n_jobs), prob.first))
    unplaced = np.zeros(prob.n_jobs, bool)
    js, ss, hs = [], [], []
    tol = 1e-9
    for j in order:
        p = prob.power_kw[j]
        a, b = prob.first[j], prob.stop[j]
        if prob.interruptible[j]:
            win = np.arange(a, b)
            room = np.clip(left[win] / p, 0.0, 1.0) if p > 0 else np.ones(len(win))
            pref = np.argsort(decision[win], kind="stable")
            need = prob.duration_h[j] / prob.slot_h
            before = np.cumsum(room[pref]) - room[pref]
            frac = np.minimum(room[pref], np.maximum(need - before, 0.0))
            if frac.sum() < need - 1e-7:
                unplaced[j] = True
                continue
            sl, fr = win[pref][frac > tol], frac[frac > tol]
            left[sl] -= p * fr
            js.append(np.full(len(sl), j))
            ss.append(sl)
            hs.append(fr * prob.slot_h)
        else:
            starts, cost = block_costs(prob, np.array([j]), decision)
            starts, cost = starts[0], cost[0]
            n = prob.n_slots[j]
            room = np.lib.stride_tricks.sliding_window_view(left[a:b], n).min(axis=1)
            cost = np.where(room[: len(cost)] >= p - tol, cost, np.inf)
            if not np.isfinite(cost).any():
                unplaced[j] = True
                continue
            s = starts[np.argmin(cost)]
            left[s:s + n] -= p
            bj, bs, bh = _block_runs(prob, np.array([j]), np.array([s]))
            js.append(bj)
            ss.append(bs)
            hs.append(bh)

    def cat(xs, dtype):
        return np.concatenate(xs) if xs else np.array([], dtype)

    return cat(js, np.int64), cat(ss, np.int64), cat(hs, float), unplaced


def greedy_schedule(prob: ShiftProblem, capacity_kw: float | np.ndarray,
                    decision: np.ndarray | None = None) -> Schedule:
    """:func:`greedy_runs` as a :class:`Schedule` (unplaced jobs charged at their
    baseline and counted late)."""
    t0 = time.perf_counter()
    job, slot, hours, unplaced = greedy_runs(prob, capacity_kw, decision)
    return make_schedule(prob, job, slot, hours, "greedy", time.perf_counter() - t0,
                         {"unplaced_jobs": int(unplaced.sum())}, unplaced)


# ------------------------------------------------------------------------- entry point
