"""What `fit` and `evaluate` read from a dataset: the `SegmentationData` protocol, its optional attributes read
with one set of defaults (`dataset_info`), and its samples read by the one image rule of
`deeplabv3p.inference.images` (`read_image`), for training and for evaluation alike.

A dataset's samples are ``(image, mask)`` pairs. The image is on the 0..255 scale (``ImageSpec(floats="0..255")``):
uint8, uint16 (the 16-bit rule of `predict`) or floating point in [0, 255], as a tensor ``(C, H, W)``, an array
``(H, W, C)`` or ``(H, W)``, or a PIL image; a float image whose values all lie in (0, 1] is refused as the 0..1
scale. The mask is ``(H, W)`` integers. A dataset with a ``load(index)`` method (`SegmentationDataset`) hands
`evaluate` its images as stored, read as `predict` reads files (floats in [0, 1]), and no augmentation.

``fit(check_data=True)`` reads every sample up front (`sample_problems`): through the dataset's own
``sample_problem(index)`` (file headers and mask values) when it has one, else the sample itself. A dataset with an
``image_size(index)`` method tells a sample's ``(H, W)`` from a file header (`image_sizes`: `fit` checks the crop
against a sample of them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from ..fields import band_counts, band_counts_text
from ..inference.images import ImageItem, ImageSpec, read_image

if TYPE_CHECKING:
    from ..inference.model import DeepLabV3Plus
    from ..pretrained.config import PretrainedCfg

__all__ = [
    "DatasetInfo", "SegmentationData", "dataset_info", "evaluation_sample", "image_sizes", "sample_problems",
    "sample_spec", "training_sample",
]  # fmt: skip

SIZE_SAMPLE = 16  # how many samples, spread over a dataset, `image_sizes` looks at


class SegmentationData(Protocol):
    """A dataset `fit` and `evaluate` accept. Only ``__len__`` and ``__getitem__`` (an ``(image, mask)`` pair) are
    required; every attribute is optional, and `dataset_info` supplies its default (see `DatasetInfo`). An
    optional ``load(index)`` returns ``(image as stored, mask)`` without augmentation, for `evaluate`."""

    num_classes: int
    in_chans: int
    ignore_index: int
    classes: Sequence[str]
    palette: Sequence[Sequence[int]]
    name: str
    reduce_zero_label: bool
    transforms: Callable[..., Any] | None
    bands: Sequence[int] | None  # raster bands read (1-based), recorded in the trained weights

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


@dataclass(frozen=True)
class DatasetInfo:
    """The `SegmentationData` attributes of one dataset, each the dataset's own or its default: the model's
    ``num_classes`` and ``in_chans``, the ignore index of the model's weights (``pretrained_cfg.ignore_index``),
    no class names or palette, the name ``"custom"``, no ``reduce_zero_label``, no own ``transforms`` (`fit`
    augments with mmseg's pipeline); ``stored`` says whether it has ``load`` (images as stored, for `evaluate`);
    ``bands`` are the raster bands it reads (None: the band rule's default)."""

    num_classes: int
    in_chans: int
    ignore_index: int
    classes: tuple[str, ...]
    palette: tuple[tuple[int, ...], ...]
    name: str
    reduce_zero_label: bool
    transforms: Callable[..., Any] | None
    stored: bool
    bands: tuple[int, ...] | None = None


def weights_cfg(model: DeepLabV3Plus) -> PretrainedCfg:
    """``model.pretrained_cfg``, which training and evaluation read (mean/std, ignore index, class names)."""
    cfg = model.pretrained_cfg
    if cfg is None:
        raise TypeError("model.pretrained_cfg is None: build the model with deeplabv3p.create_model")
    return cfg


def dataset_info(dataset: Any, model: DeepLabV3Plus) -> DatasetInfo:
    """The attributes `fit` and `evaluate` read from `dataset`, with the defaults of `DatasetInfo` (a default is
    looked up on the model only when the dataset lacks the attribute)."""

    def own(attribute: str, default: Callable[[], Any]) -> Any:
        return getattr(dataset, attribute) if hasattr(dataset, attribute) else default()

    return DatasetInfo(
        num_classes=int(own("num_classes", lambda: model.num_classes)),
        in_chans=int(own("in_chans", lambda: model.config.in_chans)),
        ignore_index=int(own("ignore_index", lambda: weights_cfg(model).ignore_index)),
        classes=tuple(getattr(dataset, "classes", ()) or ()),
        palette=tuple(tuple(c) for c in getattr(dataset, "palette", ()) or ()),
        name=str(getattr(dataset, "name", "custom")),
        reduce_zero_label=bool(getattr(dataset, "reduce_zero_label", False)),
        transforms=getattr(dataset, "transforms", None),
        stored=callable(getattr(dataset, "load", None)),
        bands=None if getattr(dataset, "bands", None) is None else tuple(int(b) for b in dataset.bands),
    )


def check_bands(info: DatasetInfo, role: str, in_chans: int) -> None:
    """A dataset that says how many bands it reads (SegmentationDataset) must read the model's, and the raster
    bands it reads (recorded in the trained weights) must be a count the model reads (`band_counts`): checked
    before training, not when the weights are saved at its end."""
    if info.in_chans != in_chans:
        raise ValueError(
            f"the {role} set reads {info.in_chans}-band images but the model takes in_chans={in_chans}; build it "
            f"with SegmentationDataset(..., in_chans={in_chans})"
        )
    if info.bands is not None and len(info.bands) not in band_counts(in_chans):
        fit = band_counts_text(in_chans)
        raise ValueError(
            f"the {role} set reads raster bands {info.bands} (its bands argument) but a model of in_chans={in_chans} "
            f"reads {fit}: build it with SegmentationDataset(..., bands=<{fit} band numbers>) (--bands), or build "
            f"the model with in_chans={len(info.bands)}"
        )


def check_labels(mask: torch.Tensor, num_classes: int, ignore_index: int, where: str) -> None:
    """Every label a class index or `ignore_index` (cross-entropy would fail deep inside, or assert on CUDA)."""
    bad = ((mask < 0) | (mask >= num_classes)) & (mask != ignore_index)
    if bool(bad.any()):
        values = torch.unique(mask[bad])[:10].tolist()
        raise ValueError(
            f"{where} holds label(s) {values} outside the {num_classes} classes (valid: 0..{num_classes - 1} and "
            f"ignore_index {ignore_index})"
        )


def sample_spec(in_chans: int) -> ImageSpec:
    """How a dataset's sample images are read for a model of `in_chans` bands: floats on the 0..255 scale."""
    return ImageSpec(in_chans, "0..255")


def _pair(sample: Any) -> tuple[Any, Any]:
    if not isinstance(sample, Sequence) or len(sample) != 2:
        raise TypeError(f"training samples must be (image, mask) pairs, got {type(sample).__name__}")
    return sample[0], sample[1]


def read_mask(mask: Any, name: str) -> torch.Tensor:
    """A sample's mask as an ``(H, W)`` int64 tensor (``(1, H, W)`` is squeezed); float masks are refused."""
    mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
    if mask.dim() == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.dim() != 2 or mask.is_floating_point():
        raise TypeError(f"{name}: the mask must be integer (H, W), got {mask.dtype} {tuple(mask.shape)}")
    return mask.as_subclass(torch.Tensor).long()


def _check_aligned(image: torch.Tensor, mask: torch.Tensor, name: str) -> None:
    if image.shape[1:] != mask.shape:
        raise ValueError(
            f"{name}: the image is {tuple(image.shape[1:])} but its mask {tuple(mask.shape)} (H, W); they must be "
            "the same size"
        )


def training_sample(dataset: Any, index: int, spec: ImageSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """``dataset[index]`` as ``(image (C, H, W) uint8 or float32 on the 0..255 scale, mask (H, W) int64)``."""
    name = f"training sample {index}"
    image, mask = _pair(dataset[index])
    pixels = read_image(image, spec, name).contiguous()
    labels = read_mask(mask, name)
    _check_aligned(pixels, labels, name)
    return pixels, labels


def evaluation_sample(dataset: Any, info: DatasetInfo, index: int, role: str) -> tuple[Any, np.ndarray]:
    """Sample `index` as `evaluate` hands it to ``predict``, read and checked by the rule training reads it by:
    ``dataset[index]`` (a sample: floats on the 0..255 scale), or `load` when the dataset has it (the image as
    stored, read as `predict` reads files: floats in [0, 1]). Returns the image for ``predict`` (the stored one
    as it is, a sample as an `ImageItem` that carries its rule) and the ``(H, W)`` int64 mask. `role` names the
    sample in errors (``"validation"``)."""
    name = f"{role} sample {index}"
    image, mask = dataset.load(index) if info.stored else _pair(dataset[index])
    spec = ImageSpec(info.in_chans) if info.stored else sample_spec(info.in_chans)
    labels = read_mask(mask, name)
    _check_aligned(read_image(image, spec, name), labels, name)
    return (image if info.stored else ImageItem(image, name, spec)), labels.numpy()


def image_sizes(dataset: Any, count: int = SIZE_SAMPLE) -> list[tuple[int, int]] | None:
    """The ``(H, W)`` of up to `count` samples spread evenly over `dataset`, from its ``image_size(index)`` (a file
    header: cheap); None for a dataset without one (decoding its samples would cost a share of the run)."""
    size_of = getattr(dataset, "image_size", None)
    if not callable(size_of):
        return None
    indices = sorted({int(i) for i in np.linspace(0, len(dataset) - 1, min(len(dataset), count)).round()})
    return [(int(h), int(w)) for h, w in map(size_of, indices)]


def sample_problems(
    dataset: Any, info: DatasetInfo, role: str, indices: Sequence[int], progress: bool = False
) -> list[str]:
    """One line per bad sample among `indices` of `dataset` (the `role` set): its own ``sample_problem(index)``
    when it has one (`SegmentationDataset`: file headers and mask values), else the sample read as training reads
    it and its labels checked against the classes. A progress bar when `progress`."""
    own = getattr(dataset, "sample_problem", None)
    spec = sample_spec(info.in_chans)
    problems = []
    for i in tqdm(indices, desc=f"check {role} data", disable=not progress, dynamic_ncols=True):
        if callable(own):
            problem = own(i)
        else:
            try:
                _, mask = training_sample(dataset, i, spec)
                check_labels(mask, info.num_classes, info.ignore_index, f"{role} sample {i} (its mask)")
                problem = None
            except (ValueError, TypeError, OSError) as e:
                problem = str(e)
        if problem is not None:
            problems.append(problem)
    return problems
