"""`DeepLabV3Plus`, the model users get: the network (`models/`) with the conveniences of the layers that own each
job, and `create_model`, which builds it.

The network (`DeepLabV3PlusNetwork`) stays a plain ``nn.Module`` that calls nothing above it; ``save_pretrained`` and
``push_to_hub`` come from the pretrained layer (`PretrainedMixin`), ``predict`` and ``optimize_for_inference`` from
this one (`PredictMixin`). This is the lowest layer that sees both mixins, so the composed class is defined here,
and the pretrained layer's builder (`build_model`) is told which class to build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..models.model import DeepLabV3PlusNetwork
from ..pretrained.factory import build_model
from ..pretrained.mixin import PretrainedMixin
from ..pretrained.source import Source
from .mixin import PredictMixin


class DeepLabV3Plus(PretrainedMixin, PredictMixin, DeepLabV3PlusNetwork):
    """DeepLabV3+ semantic segmentation model: `DeepLabV3PlusNetwork` (``forward(x)`` on a normalized batch ->
    logits at the input size) plus ``predict``, ``optimize_for_inference``, ``save_pretrained`` and
    ``push_to_hub``. ``DeepLabV3Plus(config)`` builds it untrained; `create_model` builds it with weights."""


def create_model(
    model_name: str | Path | Source,
    pretrained: bool | str | Path | None = None,
    *,
    checkpoint_path: str | Path | None = None,
    encoder_pretrained: bool = False,
    **kwargs: Any,
) -> DeepLabV3Plus:
    """Build a DeepLabV3+ model, optionally with weights.

    Args:
        model_name: an architecture (``"deeplabv3plus_r50_d8"``, or ``"deeplabv3plus"`` with ``encoder=``);
            ``"ARCH.TAG"`` naming published weights; a folder written by ``save_pretrained``; or a Hub repo in the
            same format, ``"hf-hub:ORG/NAME"`` or ``"hf-hub:ORG/NAME@REVISION"``; or a `Source` that
            `deeplabv3p.pretrained.resolve_source` returned (it carries the weights: leave `pretrained` and
            `checkpoint_path` out).
        pretrained: for an architecture or tag: False/None (no weights), True (the tag in `model_name`, or the
            architecture's best Cityscapes weights), a tag or dataset alias (``"cityscapes"``,
            ``"ade20k_512x512_160k"``), or a local checkpoint (``.safetensors``, an mmseg ``.pth``, or a saved
            folder). For a saved folder or Hub repo: None/True loads its weights, False builds it untrained.
        checkpoint_path: a local file (or saved folder) to load instead of downloading; the metadata of the tag or
            saved model is kept.
        encoder_pretrained: initialise the encoder from timm's pretrained weights (ignored when weights are loaded);
            ``model.pretrained_cfg`` then takes those weights' mean/std (and, for encoders of one fixed input
            size, that size as crop and slide window) from timm's pretrained config.
        **kwargs: ``mean`` / ``std``, the input statistics on the 0..255 scale, both, one value per input band
            (default: the weights', RGB values cycled over ``in_chans`` bands); and `ModelConfig` fields overriding the
            architecture: ``num_classes``, ``in_chans``, ``encoder``,
            ``encoder_kwargs``, ``output_stride``, ``decoder_channels``, ``low_level_channels``, ``aspp_rates``,
            ``aux_head``, ``aux_channels``, ``dropout``, ``align_corners``, ``dilation_policy``, ``multi_grid``.
            A ``num_classes`` given here that differs from the weights' re-initialises the classifier for
            fine-tuning (with a warning); an ``in_chans`` given here adapts the first conv as timm does. Without
            them, weights of another class count or input width are an error, and a saved folder's own weights
            must match its config exactly.
    """
    return build_model(
        DeepLabV3Plus,
        model_name,
        pretrained,
        checkpoint_path=checkpoint_path,
        encoder_pretrained=encoder_pretrained,
        **kwargs,
    )
