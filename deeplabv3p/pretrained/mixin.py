"""`PretrainedMixin`: what the pretrained layer adds to the network as methods (``save_pretrained``,
``push_to_hub``), as smp's hub mixin does.

Each method is the function of the same name (`saved.save_pretrained`, `hub.push_to_hub`), whose first argument is
the model: the one definition, with its signature and docstring. The mixin also keeps
``pretrained_cfg`` describing the network after ``reset_classifier``, which only this layer knows how to do.
It is composed with the network into ``deeplabv3p.DeepLabV3Plus`` (`deeplabv3p.inference.model`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import hub, saved

if TYPE_CHECKING:
    from ..models.model import DeepLabV3PlusNetwork

    _Network = DeepLabV3PlusNetwork  # the type checker sees the class the mixin is composed with
else:
    _Network = object


class PretrainedMixin(_Network):
    """``save_pretrained`` and ``push_to_hub`` as methods of a `DeepLabV3PlusNetwork`: the functions themselves,
    bound to the model as their first argument, so that method and function cannot drift apart."""

    save_pretrained = saved.save_pretrained
    push_to_hub = hub.push_to_hub

    def reset_classifier(self, num_classes: int) -> None:
        """The network's `reset_classifier`, with ``pretrained_cfg`` then describing the new head (fine-tuning)."""
        super().reset_classifier(num_classes)
        if self.pretrained_cfg is not None and self.pretrained_cfg.num_classes not in (None, num_classes):
            self.pretrained_cfg = self.pretrained_cfg.for_new_classes(num_classes)
