"""`PretrainedMixin`: what the pretrained layer adds to the network as methods (``save_pretrained``,
``push_to_hub``), as smp's hub mixin does.

Each method is the function of the same name with the model as first argument, with exactly its signature; the
functions stay the one definition (`saved.save_pretrained`, `hub.push_to_hub`). The mixin also keeps
``pretrained_cfg`` describing the network after ``reset_classifier``, which only this layer knows how to do.
It is composed with the network into ``deeplabv3p.DeepLabV3Plus`` (`deeplabv3p.inference.model`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import hub, saved

if TYPE_CHECKING:
    from ..models.model import DeepLabV3PlusNetwork
    from .config import PretrainedCfg

    _Network = DeepLabV3PlusNetwork  # the type checker sees the class the mixin is composed with
else:
    _Network = object


class PretrainedMixin(_Network):
    """``save_pretrained`` and ``push_to_hub`` as methods of a `DeepLabV3PlusNetwork`."""

    def save_pretrained(
        self,
        save_directory: str | Path,
        *,
        pretrained_cfg: PretrainedCfg | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Write ``config.json``, ``model.safetensors`` and a README model card, all or nothing;
        ``create_model(folder)`` reloads it. See `deeplabv3p.pretrained.saved.save_pretrained`."""
        return saved.save_pretrained(self, save_directory, pretrained_cfg=pretrained_cfg, overwrite=overwrite)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str = "Upload deeplabv3p model",
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
    ) -> str:
        """Upload to the Hugging Face Hub in the `save_pretrained` format; returns the commit URL. See
        `deeplabv3p.pretrained.hub.push_to_hub`."""
        return hub.push_to_hub(
            self,
            repo_id,
            commit_message=commit_message,
            private=private,
            token=token,
            revision=revision,
            create_pr=create_pr,
        )

    def reset_classifier(self, num_classes: int) -> None:
        """The network's `reset_classifier`, with ``pretrained_cfg`` then describing the new head (fine-tuning)."""
        super().reset_classifier(num_classes)
        if self.pretrained_cfg is not None and self.pretrained_cfg.num_classes not in (None, num_classes):
            self.pretrained_cfg = self.pretrained_cfg.for_new_classes(num_classes)
