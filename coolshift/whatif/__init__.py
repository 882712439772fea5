"""What-if studies before a project: scenarios as overrides on a site, embodied carbon and
payback, closed-loop evaluation on the simulator, swept at scale on dask.distributed.

Modules: :mod:`.scenario` (YAML models, overrides, sweeps), :mod:`.embodied` (product carbon
footprints, amortisation, payback), :mod:`.pv` (on-site PV with pvlib), :mod:`.evaluate`
(one scenario on the simulator, policies by name), :mod:`.sweep` (Dask runner, resumable),
:mod:`.study` (tasks and ``whatif.json``), :mod:`.report` (HTML), :mod:`.tracking` (MLflow).
"""
