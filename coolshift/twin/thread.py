"""The twin served from a background thread with its own event loop: for demos, benchmarks and tests
that drive a supervisor (``coolshift operate``'s loop, ``run-plan``) in the same process."""

from __future__ import annotations

import asyncio
import threading

from .site_twin import SiteTwin

__all__ = ["TwinThread"]


class TwinThread:
    """``with TwinThread(twin):`` serves ``twin`` until the block ends (or :meth:`stop`).

    Entering waits until the twin serves (its first step simulated, its clock started); an
    error while starting is raised there. ``start_timeout_s`` bounds that wait.
    """

    def __init__(self, twin: SiteTwin, start_timeout_s: float = 60.0):
        self.twin, self.start_timeout_s = twin, float(start_timeout_s)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._main, name=f"twin-{twin.site.name}", daemon=True)

    def _main(self) -> None:
        async def main() -> None:
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            ready = asyncio.Event()
            task = asyncio.create_task(self.twin.run(self._stop, ready))
            done, _ = await asyncio.wait({task, asyncio.create_task(ready.wait())},
                                         return_when=asyncio.FIRST_COMPLETED)
            self.ready.set()
            await task

        try:
            asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread by __enter__
            self.error = exc
            self.ready.set()

    def __enter__(self) -> "TwinThread":
        self.thread.start()
        if not self.ready.wait(self.start_timeout_s):
            self.stop()
            raise RuntimeError(f"the twin of {self.twin.site.name} did not start within {self.start_timeout_s:g} s")
        if self.error is not None:
            raise self.error
        return self

    def stop(self) -> None:
        if self._loop is not None and self.thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)

    def __exit__(self, *exc: object) -> None:
        self.stop()
