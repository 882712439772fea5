"""Dask for the fleet: a LocalCluster of single-threaded worker processes by default (one per
core), or a running scheduler's address for a real cluster. Site LP blocks are scattered once
and stay on their workers; each round of site solves is one task per worker (the sites whose
blocks live there), so the Dask round trip is paid per worker, not per site."""

from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterator

__all__ = ["dask_client", "dask_map", "dask_scatter", "run_chunk", "balanced_groups"]


@contextlib.contextmanager
def dask_client(workers: int = 2, scheduler: str | None = None) -> Iterator[object]:
    """A ``distributed.Client``: on ``scheduler`` if given, else on a loopback LocalCluster."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # "port 8787 in use": no dashboard is wanted
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address=None)
    with cluster, Client(cluster) as client:
        yield client


def run_chunk(func: Callable, args: list[tuple]) -> list:
    """One task: ``func`` over several argument tuples, in order."""
    return [func(*a) for a in args]


def dask_map(client) -> Callable:
    """``map_fn(func, args)``: one task per worker holding the first argument's data (a
    scattered block), or round-robin chunks when the arguments carry no data; results in order.

    Where each block lives is looked up once and kept: a block stays with its worker, so its
    HiGHS model and basis do too, and a run takes the same iterations on any number of workers
    (a moved block would be solved from scratch, on another vertex of a degenerate LP)."""
    from distributed import Future

    where: dict[str, str] = {}

    def map_fn(func, args):
        if not args:
            return []
        firsts = [a[0] for a in args]
        groups: dict[str, list[int]] = {}
        if all(isinstance(f, Future) for f in firsts):
            unknown = [f for f in firsts if f.key not in where]
            if unknown:
                who = client.who_has(unknown)
                for f in unknown:
                    where[f.key] = sorted(who.get(f.key, ()) or ("",))[0]
            for i, f in enumerate(firsts):
                groups.setdefault(where[f.key], []).append(i)
        else:
            n = max(1, len(client.scheduler_info()["workers"]))
            for i in range(len(args)):
                groups.setdefault(f"chunk{i % n}", []).append(i)
        futures = {}
        for addr, idx in groups.items():
            pin = {"workers": [addr], "allow_other_workers": True} if addr and not addr.startswith("chunk") else {}
            futures[addr] = client.submit(run_chunk, func, [args[i] for i in idx], pure=False, **pin)
        out = [None] * len(args)
        for addr, fut in futures.items():
            for i, r in zip(groups[addr], fut.result()):
                out[i] = r
        return out
    return map_fn


def balanced_groups(weights: list[float], n_workers: int) -> list[list[int]]:
    """Longest-processing-time-first: items (by index) to ``n_workers`` groups, heaviest item
    to the lightest group, so one round of solves ends when the busiest worker does and that is
    within 4/3 of the best split (Graham 1969)."""
    load, groups = [0.0] * n_workers, [[] for _ in range(n_workers)]
    for i in sorted(range(len(weights)), key=lambda i: -weights[i]):
        w = min(range(n_workers), key=load.__getitem__)
        groups[w].append(i)
        load[w] += weights[i]
    return groups


def dask_scatter(client) -> Callable:
    """Send the site blocks to the workers once, balanced by their LP size (non-zeros, a proxy
    for solve time); returns their futures in the blocks' order."""
    def scatter(blocks):
        blocks = list(blocks)
        workers = sorted(client.scheduler_info()["workers"])
        weights = [float(getattr(getattr(b, "a", None), "nnz", 1) or 1) for b in blocks]
        out = [None] * len(blocks)
        for addr, idx in zip(workers, balanced_groups(weights, max(1, len(workers)))):
            if idx:
                futs = client.scatter([blocks[i] for i in idx], workers=[addr], broadcast=False)
                for i, f in zip(idx, futs):
                    out[i] = f
        return out
    return scatter
