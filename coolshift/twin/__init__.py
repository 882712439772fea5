"""The site twin: the simulator's physics behind a site's BMS points, on a clock N times real time.

- :mod:`.plant`: :class:`TwinPlant`, the simulator stepped one planning step at a time
  (:class:`coolshift.simulations.engine.Stepper`) under the setpoints in force, with the
  ``best_practice`` rule as the site's local controller.
- :mod:`.clock`: :class:`TwinClock`, site time from wall time at ``speed``.
- :mod:`.points`: the twin's point map (the site's map plus its standard telemetry and a
  heartbeat, where the map lacks them).
- :mod:`.site_twin`: :class:`SiteTwin`, the plant served over BACnet or Modbus
  (:mod:`coolshift.bms.sim`) with the controller's watchdog, and :func:`load_twin`.

``coolshift twin`` runs it; see docs/bms.md, "Site twin".
"""

from .clock import TwinClock
from .plant import TwinPlant
from .points import twin_point_map
from .site_twin import SiteTwin, load_twin

__all__ = ["TwinClock", "TwinPlant", "twin_point_map", "SiteTwin", "load_twin"]
