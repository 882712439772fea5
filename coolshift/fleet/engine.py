"""Dask for the fleet: a LocalCluster of single-threaded worker processes by default (one per
core), or a running scheduler's address for a real cluster. Site subproblems and site
simulations are submitted as tasks; site LP blocks are scattered once and stay on the workers."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

__all__ = ["dask_client", "dask_map", "dask_scatter"]


@contextlib.contextmanager
def dask_client(workers: int = 2, scheduler: str | None = None) -> Iterator[object]:
    """A ``distributed.Client``: on ``scheduler`` if given, else on a loopback LocalCluster."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client


def dask_map(client) -> Callable:
    """``map_fn(func, args)`` running each call as a task; results in order."""
    def map_fn(func, args):
        futures = [client.submit(func, *a, pure=False) for a in args]
        return client.gather(futures)
    return map_fn


def dask_scatter(client) -> Callable:
    """Send the site blocks to the workers once, spread across them; returns their futures."""
    def scatter(blocks):
        return client.scatter(list(blocks), broadcast=False)
    return scatter
