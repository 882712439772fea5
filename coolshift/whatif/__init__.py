"""What-if studies before a project: scenarios as overrides on a site, embodied carbon and
payback, closed-loop evaluation on the simulator, swept at scale on dask.distributed.

Modules: :mod:`.scenario` (YAML models, overrides, sweeps), :mod:`.embodied` (product carbon
footprints, amortisation, payback), :mod:`.pv` (on-site PV with pvlib), :mod:`.plant_model` (each scenario's learned plant
model: simulated commissioning, fit, disk cache), :mod:`.evaluate` (one scenario closed-loop
on the simulator: best-practice baseline and the optimiser's policy), :mod:`.sweep` (Dask runner, resumable),
:mod:`.study` (tasks and ``whatif.json``), :mod:`.report` (HTML), :mod:`.tracking` (MLflow).
"""
