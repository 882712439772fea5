"""A fleet of sites planned jointly: inputs (data.py), rule-based baselines (rules.py), the
per-site physics used to score every policy (physics.py), the Dask engine (engine.py) and the
plan / evaluate use cases (usecase.py). The LP itself is :mod:`coolshift.optimizer.fleet`."""
