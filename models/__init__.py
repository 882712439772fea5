"""Learned models (``coolshift.models``): what the optimiser plans with.

- :mod:`coolshift.coefficients`: ``PlantCoefficients``, the contract with the optimiser
- :mod:`coolshift.models.thermal`: ``LinearPlantModel`` (linear in the decisions) and its
  gradient-boosting reference
- :mod:`coolshift.models.forecast`: carbon-intensity and workload forecasters, baselines
- :mod:`coolshift.models.registry`: MLflow log / register / alias / load
- :mod:`coolshift.models.power_curve`: server power curves from measured telemetry
- :mod:`coolshift.models.overhead`: a fleet site's facility power from IT power and weather
- :mod:`coolshift.models.basis`: the hat-function basis both plant models are linear in

Submodules are imported on demand (MLflow and scikit-learn are slow to import).
"""
