"""Use cases as library functions: the nightly plan, training the plant model, the closed-loop evaluation.

Each takes a frozen options dataclass (every option its ``coolshift`` command has) and
returns a result dataclass; the commands in :mod:`coolshift.commands` only parse options,
call these and print. Import the one you need, e.g.
``from coolshift.usecases.nightly import NightlyOptions, nightly_plan``.
"""
