"""`PredictMixin`: what the inference layer adds to the network as methods (``predict``,
``optimize_for_inference``).

Each method is the function of the same name (`pipeline.predict`, `optimize.optimize_for_inference`), whose first
argument is the model: the one definition, with its signature and docstring. It is composed with the
network into ``deeplabv3p.DeepLabV3Plus`` (`model.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import optimize, pipeline

if TYPE_CHECKING:
    from ..models.model import DeepLabV3PlusNetwork

    _Network = DeepLabV3PlusNetwork  # the type checker sees the class the mixin is composed with
else:
    _Network = object


class PredictMixin(_Network):
    """``predict`` and ``optimize_for_inference`` as methods of a `DeepLabV3PlusNetwork`: the functions themselves,
    bound to the model as their first argument, so that method and function cannot drift apart."""

    predict = pipeline.predict
    optimize_for_inference = optimize.optimize_for_inference
