"""Run independent scenario tasks on dask.distributed, writing each result as it finishes.

- Cluster: a ``LocalCluster`` of worker *processes* (one per core, one thread each, by
  default) or an existing scheduler (``scheduler="tcp://HOST:PORT"``).
- Shared input (the site's data for the period) is scattered to the workers once.
- Each finished task is written at once, atomically, to ``<out>/<name>.json`` from the
  client, so an interrupted sweep keeps what finished; a rerun skips a task whose file holds
  a success for the same content key (:func:`coolshift.whatif.scenario.scenario_key`) and
  recomputes failed or changed ones.
- A task that raises is recorded with its error and traceback; the others complete.
- :func:`run_loop` runs the same tasks in-process (the floor the Dask overhead is measured against).
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from coolshift.io.atomic import write_json_atomic

__all__ = ["Task", "SweepOutcome", "run_sweep", "run_loop", "load_finished", "result_path"]

# Resubmissions of a task cancelled because a worker holding its input was lost.
MAX_RESUBMITS = 2


@dataclass(frozen=True)
class Task:
    """One scenario: a unique ``name``, a content ``key`` and the ``payload`` the task function takes."""

    name: str
    key: str
    payload: Any


@dataclass
class SweepOutcome:
    records: dict[str, dict] = field(default_factory=dict)  # name -> record (ok or failed)
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> error
    elapsed_s: float = 0.0
    workers: int = 0
    scheduler: str = ""

    @property
    def ok(self) -> dict[str, dict]:
        return {n: r["result"] for n, r in self.records.items() if r.get("status") == "ok"}


def result_path(out_dir: Path, name: str) -> Path:
    return Path(out_dir) / f"{name}.json"


def load_finished(tasks: list[Task], out_dir: Path) -> dict[str, dict]:
    """Records already on disk that succeeded for the same content key (resume)."""
    done = {}
    for t in tasks:
        p = result_path(out_dir, t.name)
        if not p.exists():
            continue
        try:
            rec = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # unreadable: recompute
        if rec.get("status") == "ok" and rec.get("key") == t.key:
            done[t.name] = rec
    return done


def _call(fn: Callable, payload: Any, shared: Any) -> dict:
    """Runs on the worker: the task's result, or its error, never an exception."""
    t0 = time.perf_counter()
    where = f"{socket.gethostname()}:{os.getpid()}"
    try:
        result = fn(payload, shared)
    except Exception as exc:  # a failed scenario is reported, the sweep goes on
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(),
                "elapsed_s": time.perf_counter() - t0, "worker": where}
    return {"status": "ok", "result": result, "elapsed_s": time.perf_counter() - t0, "worker": where}


def _record(task: Task, rec: dict, out_dir: Path | None) -> dict:
    rec = {"name": task.name, "key": task.key, **rec, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if out_dir is not None:
        write_json_atomic(result_path(out_dir, task.name), rec)
    return rec


def _check_names(tasks: list[Task]) -> None:
    names = [t.name for t in tasks]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"duplicate scenario names in the sweep: {dup}")


def _progress(enabled: bool):
    """A rich progress bar over tasks, with the count of failed ones."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(), TimeRemainingColumn(),
                    disable=not enabled, transient=False)


def run_loop(tasks: list[Task], fn: Callable, out_dir: Path | None, shared: Any = None, *,
             progress: bool = False, resume: bool = True) -> SweepOutcome:
    """The same sweep as :func:`run_sweep`, in this process, one task after another."""
    _check_names(tasks)
    t0 = time.perf_counter()
    out = SweepOutcome(workers=1, scheduler="in-process loop")
    done = load_finished(tasks, out_dir) if (resume and out_dir is not None) else {}
    prog = _progress(progress)
    with prog:
        bar = prog.add_task("scenarios", total=len(tasks), failed=0, completed=len(done))
        for t in tasks:
            if t.name in done:
                out.records[t.name] = done[t.name]
                out.skipped.append(t.name)
                continue
            rec = _record(t, _call(fn, t.payload, shared), out_dir)
            _tally(out, t.name, rec)
            prog.update(bar, advance=1, failed=len(out.failed))
    out.elapsed_s = time.perf_counter() - t0
    return out


def _tally(out: SweepOutcome, name: str, rec: dict) -> None:
    out.records[name] = rec
    out.computed.append(name)
    if rec["status"] != "ok":
        out.failed[name] = rec["error"]


def run_sweep(tasks: list[Task], fn: Callable, out_dir: Path | None, shared: Any = None, *,
              scheduler: str | None = None, n_workers: int | None = None, threads_per_worker: int = 1,
              progress: bool = False, resume: bool = True, client=None) -> SweepOutcome:
    """Run ``fn(task.payload, shared)`` for every task on Dask; write each result as it finishes.

    ``scheduler``: address of an existing scheduler; otherwise a ``LocalCluster`` of
    ``n_workers`` processes (default: one per core) on 127.0.0.1 without a dashboard.
    ``client``: an existing ``distributed.Client`` to use instead (left open).
    """
    from distributed import Client, LocalCluster, as_completed

    _check_names(tasks)
    t0 = time.perf_counter()
    done = load_finished(tasks, out_dir) if (resume and out_dir is not None) else {}
    todo = [t for t in tasks if t.name not in done]
    out = SweepOutcome()
    for name, rec in done.items():
        out.records[name] = rec
        out.skipped.append(name)

    cluster = None
    own_client = client is None
    if not todo:
        out.elapsed_s = time.perf_counter() - t0
        out.scheduler = scheduler or "not started (all results present)"
        return out
    if own_client:
        if scheduler:
            client = Client(scheduler, timeout="20s")
        else:
            cluster = LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=threads_per_worker,
                                   processes=True, host="127.0.0.1", dashboard_address=None)
            client = Client(cluster)
    try:
        out.scheduler = client.scheduler.address
        out.workers = len(client.scheduler_info().get("workers", {}))
        # hash=False: a fresh key per sweep, so a previous sweep releasing its copy cannot race this one
        # (wrapped in a list so a dict is scattered as one object, not value by value)
        shared_f = client.scatter([shared], broadcast=True, hash=False)[0] if shared is not None else None
        run_id = uuid.uuid4().hex[:8]  # task keys unique per sweep: an interrupted sweep's leftovers cannot collide
        by_key = {}
        futures = []
        for t in todo:
            f = client.submit(_call, fn, t.payload, shared_f, key=f"whatif-{t.name}-{t.key}-{run_id}", pure=False)
            by_key[f.key] = t
            futures.append(f)
        prog = _progress(progress)
        with prog:
            bar = prog.add_task("scenarios", total=len(tasks), failed=0, completed=len(done))
            pending = as_completed(futures)
            retries: dict[str, int] = {}
            for f in pending:
                t = by_key[f.key]
                if f.status == "cancelled" and retries.get(t.name, 0) < MAX_RESUBMITS:
                    # A worker that held the scattered input was lost (e.g. restarted by its nanny):
                    # scatter the input again and resubmit, rather than failing the scenario.
                    retries[t.name] = retries.get(t.name, 0) + 1
                    if shared is not None and shared_f.status != "finished":
                        shared_f = client.scatter([shared], broadcast=True, hash=False)[0]
                    nf = client.submit(_call, fn, t.payload, shared_f, pure=False,
                                       key=f"whatif-{t.name}-{t.key}-{run_id}-r{retries[t.name]}")
                    by_key[nf.key] = t
                    pending.add(nf)
                    continue
                if f.status == "cancelled":
                    rec = {"status": "failed", "error": f"cancelled by the scheduler {MAX_RESUBMITS + 1} times "
                                                        f"(workers lost?)", "traceback": ""}
                elif f.status == "error":  # the worker died (KilledWorker) or the call could not run
                    exc = f.exception()
                    rec = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                           "traceback": "".join(traceback.format_tb(f.traceback())) if f.traceback() else ""}
                else:
                    rec = f.result()
                rec = _record(t, rec, out_dir)
                _tally(out, t.name, rec)
                f.release()
                prog.update(bar, advance=1, failed=len(out.failed))
    finally:
        if own_client:
            client.close()
            if cluster is not None:
                cluster.close()
    out.elapsed_s = time.perf_counter() - t0
    return out
