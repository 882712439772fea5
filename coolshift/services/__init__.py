"""Services around the live loop in its own process: the REST API, the web console and Prometheus metrics.

:mod:`.api` (FastAPI app and uvicorn server in the loop's event loop), :mod:`.metrics`
(a collector reading the loop's status at scrape time), ``static/`` (the console page).
docs/live_api.md.
"""
