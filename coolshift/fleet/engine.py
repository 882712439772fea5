"""Dask for the fleet: a LocalCluster of single-threaded worker processes by default (one per
core), or a running scheduler's address for a real cluster.

The decomposition's site blocks are installed once on every worker by a worker plugin (a
worker that joins later gets them too) and its tasks name a block by key. Site solves are
stateless (:func:`coolshift.optimizer.fleet.price_block`), so any worker can take any site:
each round's tasks are queued on the scheduler, longest first by the site's last measured
solve time, and handed to the workers as they free up. That is greedy list scheduling
(Graham 1969): a round ends within one site's solve time of the best split, where sites
pinned to workers wait for the unluckier worker.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import warnings
from typing import Callable, Iterator

from distributed import Client, LocalCluster, WorkerPlugin, get_worker

__all__ = ["dask_client", "dask_map", "DaskSites", "SiteBlocksPlugin"]


@contextlib.contextmanager
def dask_client(workers: int = 2, scheduler: str | None = None) -> Iterator[Client]:
    """A ``distributed.Client``: on ``scheduler`` if given, else on a loopback LocalCluster."""
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


def dask_map(client: Client) -> Callable:
    """``map_fn(func, args)``: one Dask task per argument tuple, results in order."""
    def map_fn(func, args):
        if not args:
            return []
        return client.gather([client.submit(func, *a, pure=False) for a in args])
    return map_fn


class SiteBlocksPlugin(WorkerPlugin):
    """Holds a fleet's site LP blocks on a worker, by key (sent once, not with every task)."""

    def __init__(self, name: str, blocks: list):
        self.name = name
        self.blocks = {b.key: b for b in blocks}


def _timed_on_block(plugin: str, func: Callable, key: str, *rest):
    """Worker side: ``func(block, *rest)`` on the installed block, and its seconds."""
    block = get_worker().plugins[plugin].blocks[key]
    t0 = time.perf_counter()
    out = func(block, *rest)
    return out, time.perf_counter() - t0


class DaskSites:
    """A fleet's site blocks on a Dask cluster: ``scatter`` installs them on every worker and
    returns their keys; ``map(func, args)`` runs ``func(block, *rest)`` for each
    ``(key, *rest)``, one task each, longest first. ``close`` removes the blocks."""

    def __init__(self, client: Client):
        self.client = client
        self._plugins: list[str] = []
        self._plugin_of: dict[str, str] = {}
        self._size: dict[str, float] = {}
        self._seconds: dict[tuple, float] = {}

    def scatter(self, blocks) -> list[str]:
        blocks = list(blocks)
        keys = [b.key for b in blocks]
        name = "coolshift-fleet-" + hashlib.sha1("\n".join(keys).encode()).hexdigest()[:12]
        self.client.register_plugin(SiteBlocksPlugin(name, blocks), name=name)
        self._plugins.append(name)
        for b in blocks:
            self._size[b.key] = float(getattr(getattr(b, "a", None), "nnz", 1) or 1)
            self._plugin_of[b.key] = name
        return keys

    def map(self, func: Callable, args: list[tuple]) -> list:
        if not args:
            return []
        kinds = [(func.__name__, a[0], tuple(x is None for x in a[1:])) for a in args]
        # Longest first: the last solve time of the same site and kind of call; before there is
        # one for every task, the blocks' non-zeros (a proxy for solve time).
        known = all(k in self._seconds for k in kinds)
        weight = [self._seconds[k] * 1e6 if known else self._size[a[0]] for k, a in zip(kinds, args)]
        futures = [self.client.submit(_timed_on_block, self._plugin_of[a[0]], func, *a, pure=False, priority=int(w))
                   for a, w in zip(args, weight)]
        out = []
        for k, (res, seconds) in zip(kinds, self.client.gather(futures)):
            self._seconds[k] = seconds
            out.append(res)
        return out

    def close(self) -> None:
        for name in self._plugins:
            with contextlib.suppress(Exception):     # the cluster may already be gone
                self.client.unregister_worker_plugin(name)
        self._plugins.clear()

    def __enter__(self) -> "DaskSites":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
