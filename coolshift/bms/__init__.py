"""Push plan setpoints to a building management system, safely (BACnet/IP, Modbus TCP).

- :mod:`.points`: the point map (YAML, strict): which plan variable goes to which object
  or register, with limits; only mapped points can ever be written.
- :mod:`.plan`: read a plan run folder (``plan.csv`` + ``summary.json``).
- :mod:`.safety`: pure pre-write checks (limits, ASHRAE envelope, step, rate, freshness).
- :mod:`.bacnet`, :mod:`.modbus`: protocol adapters (bacpypes3, pymodbus).
- :mod:`.audit`: append-only sqlite audit log, written before every write.
- :mod:`.push`: dry run / apply / verify / roll back / release.
- :mod:`.runner`: follow a plan through the day, relinquishing on SIGTERM/SIGINT.
- :mod:`.sim`: ``coolshift bms-sim``, a loopback BMS backed by the simulator.

See ``docs/bms.md``.
"""
