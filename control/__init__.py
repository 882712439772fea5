"""The closed-loop layer: receding-horizon loop, state, policies, environments.

For now it holds the Gymnasium environment (:mod:`coolshift.control.gym_env`). Importing
this package registers one environment per example site in ``configs/sites/``::

    import gymnasium
    import coolshift.control  # registers coolshift/SanJose-v0 and coolshift/Philadelphia-v0

    env = gymnasium.make("coolshift/SanJose-v0")

(or, without the import, ``gymnasium.make("coolshift.control:coolshift/SanJose-v0")``:
gymnasium imports the module named before the colon). The environment module itself is
imported only when an environment is made: it pulls in the optimiser and the learned models.
See docs/control.md.
"""

from gymnasium.envs.registration import register, registry

__all__ = ["ENV_SITES"]

# Environment id -> example site config (stem of configs/sites/<stem>.yaml).
ENV_SITES = {
    "coolshift/SanJose-v0": "sanjose_colo_2mw",
    "coolshift/Philadelphia-v0": "philadelphia_multihall_20mw",
}

for _env_id, _stem in ENV_SITES.items():
    if _env_id not in registry:  # a re-import (importlib.reload) must not warn about overriding
        register(id=_env_id, entry_point="coolshift.control.gym_env:CoolshiftEnv", kwargs={"site": _stem})
