"""Job-level carbon-aware scheduling (``coolshift shift``): when each job of a batch should run.

- :mod:`.jobs`: the job table, its checks and the problem on the intensity grid; the exact
  per-job optimum and the greedy rule;
- :mod:`.capacity`: the MILP/LP of jobs competing for a capacity limit (HiGHS);
- :mod:`.solve`: the method chosen for a problem, and the whole call from jobs to schedule;
- :mod:`.forecast`: scheduling on forecast intensity (own forecaster, noise, perfect).
"""

from .jobs import (JobsError, Schedule, ShiftProblem, SolverStopped, greedy_runs, greedy_schedule, independent_schedule,
                   make_schedule, prepare, read_jobs, resample_intensity, slot_load_kw, validate_jobs)
from .solve import schedule_jobs, solve_runs

__all__ = ["JobsError", "Schedule", "ShiftProblem", "SolverStopped", "greedy_runs", "greedy_schedule",
           "independent_schedule", "make_schedule", "prepare", "read_jobs", "resample_intensity", "slot_load_kw",
           "validate_jobs", "schedule_jobs", "solve_runs"]
