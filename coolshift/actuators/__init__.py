"""Actuators: the plan's levers enacted on real systems (issue 19).

:mod:`.inventory` reads the actuator map (which Redfish service, which hosts serve which
server pool, which hosts carry work) strictly; :mod:`.redfish` powers hosts off and on to
follow the plan's ``active_servers__<pool>``, with the BMS push's contract: a dry run by
default, ``--apply`` to act, every action in the hash-chained audit log before it happens,
a failed step rolled back (hosts it powered off are powered on again) and ``release``
powering every host Coolshift switched off back on.
"""
