"""`DeepLabV3PlusNetwork`: encoder -> decoder -> classifier -> logits at the input size; the network and nothing else.

The module is built from a `ModelConfig` alone, so ``DeepLabV3PlusNetwork(model.config)`` always rebuilds the same
network. What the weights are (classes, palette, test-time settings) travels beside it as ``model.pretrained_cfg``,
set by the layers above. The conveniences users call on a model (``predict``, ``save_pretrained``, ...) are defined
in the layers that own those jobs and composed with this class into ``deeplabv3p.DeepLabV3Plus``
(`deeplabv3p.inference.model`), which is what ``create_model`` returns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..fields import check_choice
from .config import OUTPUT_STRIDES, ModelConfig, OutputStride
from .decoder import Classifier, DeepLabV3PlusDecoder, FCNHead
from .encoder import Encoder

if TYPE_CHECKING:  # the type of the metadata slot only: models/ never calls the layers above it
    from ..pretrained.config import PretrainedCfg


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() or torch.is_autocast_cpu_enabled()


class DeepLabV3PlusNetwork(nn.Module):
    """DeepLabV3+ semantic segmentation network (a plain ``nn.Module``; ``deeplabv3p.DeepLabV3Plus`` adds predict,
    save_pretrained and friends).

    ``forward(x)`` takes a normalized float batch ``(N, in_chans, H, W)`` of any H and W (at least
    `min_input_size`) and returns logits ``(N, num_classes, H, W)``. With ``return_aux=True`` it also returns the
    auxiliary head's logits at the input size (None when the model has no auxiliary head), as training needs.
    """

    def __init__(self, config: ModelConfig, encoder_pretrained: bool = False) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(
            config.encoder,
            output_stride=config.output_stride,
            dilation_policy=config.dilation_policy,
            multi_grid=config.multi_grid,
            in_chans=config.in_chans,
            pretrained=encoder_pretrained,
            timm_kwargs=config.encoder_kwargs,
        )
        channels = self.encoder.channels
        self.decoder = DeepLabV3PlusDecoder(
            high_channels=channels[-1],
            low_channels=channels[0],
            channels=config.decoder_channels,
            low_level_channels=config.low_level_channels,
            rates=config.resolved_aspp_rates(),
            align_corners=config.align_corners,
        )
        self.classifier = Classifier(config.decoder_channels, config.num_classes, config.dropout)
        self.aux_head = (
            FCNHead(channels[-2], config.aux_channels, config.num_classes, config.dropout) if config.aux_head else None
        )
        self.pretrained_cfg: PretrainedCfg | None = None
        self.grad_checkpointing = False
        # Set by optimize_for_inference(dtype=...): eval-mode forwards run under autocast in it (float32: none).
        self.inference_dtype: torch.dtype | None = None

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def min_input_size(self) -> int:
        """Smallest height and width accepted: one pixel of the deepest feature, i.e. the output stride."""
        return self.config.output_stride

    @property
    def min_train_batch(self) -> int:
        """Smallest batch a training step accepts: 2, since the image-pool branch normalises one value per image
        (1 under SyncBatchNorm, which pools the values across processes)."""
        return 1 if isinstance(self.decoder.aspp.pool[1].bn, nn.SyncBatchNorm) else 2

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"input must be a torch.Tensor (N, C, H, W), got {type(x).__name__}; use predict() for images"
            )
        if x.dim() != 4:
            raise ValueError(
                f"input must have shape (N, C, H, W), got {tuple(x.shape)}; add a batch dimension with x[None]"
            )
        if x.shape[1] != self.config.in_chans:
            raise ValueError(
                f"input has {x.shape[1]} channels but the model expects in_chans={self.config.in_chans} "
                f"(input shape {tuple(x.shape)})"
            )
        if not x.is_floating_point():
            raise TypeError(f"input must be a floating-point tensor (normalized image), got dtype {x.dtype}")
        weight_dtype = self.classifier.conv.weight.dtype
        if x.dtype != weight_dtype and not _autocast_enabled(x.device.type):
            raise TypeError(
                f"input dtype {x.dtype} differs from the model's {weight_dtype}: pass x.to({weight_dtype}) "
                "or run under torch.autocast"
            )
        m = self.min_input_size
        if x.shape[2] < m or x.shape[3] < m:
            raise ValueError(
                f"input is {x.shape[2]}x{x.shape[3]} (height x width) but the model needs at least {m}x{m} pixels"
            )
        if self.training and x.shape[0] < self.min_train_batch:
            raise ValueError(
                "training needs a batch of at least 2 images (BatchNorm statistics of the image-pool branch are "
                f"undefined for one); got batch {x.shape[0]}. Call model.eval() for inference, or use "
                "SyncBatchNorm across processes."
            )

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features from stride 4 to the deepest."""
        return self.encoder(x)

    def forward(
        self, x: torch.Tensor, return_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        dtype = self.inference_dtype
        if dtype not in (None, torch.float32) and not self.training and not _autocast_enabled(x.device.type):
            with torch.autocast(device_type=x.device.type, dtype=dtype):
                return self._forward(x, return_aux)
        return self._forward(x, return_aux)

    def _forward(self, x: torch.Tensor, return_aux: bool) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        self._check_input(x)
        size = x.shape[2:]
        features = self.encoder(x)
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            decoded = checkpoint(self.decoder, features[0], features[-1], use_reentrant=False)
        else:
            decoded = self.decoder(features[0], features[-1])
        logits = self.classifier(decoded)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=self.config.align_corners)
        if not return_aux:
            return logits
        aux = None
        if self.aux_head is not None:
            aux = self.aux_head(features[-2])
            aux = F.interpolate(aux, size=size, mode="bilinear", align_corners=self.config.align_corners)
        return logits, aux

    def set_output_stride(self, output_stride: OutputStride) -> None:
        """Switch the output stride (8, 16 or 32) in place, keeping the weights (train at 16, evaluate at 8).

        ASPP rates that follow the stride (``aspp_rates=None``) follow it here too. Parameters are new tensors
        afterwards: build optimizers after calling this.
        """
        check_choice("output_stride", output_stride, OUTPUT_STRIDES)
        self.encoder.set_output_stride(output_stride)
        if self.grad_checkpointing:  # the rebuilt trunk starts without it
            self.encoder.set_grad_checkpointing(True)
        self.config = self.config.replace(output_stride=output_stride)
        self.decoder.aspp.set_rates(self.config.resolved_aspp_rates())

    def freeze_encoder(self, freeze: bool = True) -> None:
        """Stop (or restart) gradients to the encoder's parameters."""
        for p in self.encoder.parameters():
            p.requires_grad_(not freeze)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the classifier (and auxiliary classifier) with freshly initialised ones for `num_classes`."""
        self.config = self.config.replace(num_classes=num_classes)
        ref = self.classifier.conv.weight
        self.classifier = Classifier(self.config.decoder_channels, num_classes, self.config.dropout).to(ref.device)
        if self.aux_head is not None:
            aux = self.aux_head.classifier
            self.aux_head.classifier = Classifier(aux.conv.in_channels, num_classes, self.config.dropout).to(ref.device)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations during backward instead of keeping them: less training memory, slower steps.

        The encoder's stages are checkpointed by timm (all but its first and last modules) and the decoder as a whole.
        """
        if not hasattr(self.encoder.body, "set_grad_checkpointing"):
            raise ValueError(f"encoder {self.config.encoder!r} does not support gradient checkpointing in timm")
        self.encoder.set_grad_checkpointing(enable)
        self.grad_checkpointing = bool(enable)
