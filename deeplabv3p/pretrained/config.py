"""`PretrainedCfg`: what a set of weights is (classes, palette, normalisation, test-time settings, provenance)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..fields import JsonRecord, check_band_count, check_bands, check_float, check_records
from ..models.config import ModelConfig
from .test_settings import TestSettings

# Version of the saved ``config.json`` layout (architecture, model_config, pretrained_cfg, library_version).
# 3: ``pretrained_cfg.bands`` (the raster bands trained on); 2: the test-time settings nested as
# ``pretrained_cfg.test`` (`TestSettings`); 1 had them as flat fields.
CONFIG_SCHEMA_VERSION = 3

# Fields that describe where weights come from and what their classes are called, without changing what the model
# predicts: a saved config may leave these out (see `deeplabv3p.pretrained.saved.parse_config`).
DESCRIPTIVE_FIELDS = (
    "architecture", "tag", "dataset", "classes", "palette", "metrics", "hf_hub_id", "url", "sha256_prefix",
    "source_config", "iters", "license", "notes",
)  # fmt: skip

# Input statistics are on the 0..255 scale every image is read onto (see `deeplabv3p.inference.images`).
PIXEL_RANGE = (0.0, 255.0)


def _check_values(name: str, given: Any) -> tuple[float, ...]:
    """One statistic (`name` is ``mean`` or ``std``) as a float tuple, each value checked on its own."""
    if isinstance(given, str) or not isinstance(given, tuple | list) or not given:
        raise TypeError(f"{name} must be a non-empty tuple of numbers, one per input band, got {given!r}")
    values = tuple(check_float(f"{name} entries", v) for v in given)
    if name == "std":
        for s in values:
            check_float("std entries", s, 0.0, min_open=True)
    lo, hi = PIXEL_RANGE
    if name == "mean" and any(not lo <= m <= hi for m in values):
        raise ValueError(
            f"mean {values} is outside 0..255: statistics are on the 0..255 scale images are read onto "
            "(uint16 bands are read as value * 255 / 65535, so multiply raw uint16 statistics by 255 / 65535)"
        )
    return values


def _check_statistics(mean: Any, std: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """`mean` / `std` as float tuples of one value per input band, checked for what a mistake looks like."""
    mean_t, std_t = _check_values("mean", mean), _check_values("std", std)
    if len(mean_t) != len(std_t):
        raise ValueError(f"mean has {len(mean_t)} values but std has {len(std_t)}: give one of each per input band")
    if max(mean_t) <= 1.0 and max(std_t) <= 1.0:
        raise ValueError(
            f"mean {mean_t} and std {std_t} look like statistics on the 0..1 scale (timm/torchvision style); "
            "deeplabv3p normalises on the 0..255 scale: multiply them by 255"
        )
    return mean_t, std_t


def given_statistics(given: Mapping[str, Any], in_chans: int) -> dict[str, tuple[float, ...]]:
    """`mean` / `std` a caller sets (`create_model`'s keywords, ``--model-kwargs``): both, checked, one per band.

    Unlike the weights' own RGB statistics (`PretrainedCfg.for_in_chans`), statistics given on purpose are never
    spread over other bands (three values for four bands would normalise the fourth with the first's), and one
    without the other is refused rather than paired with the weights' (ImageNet's std for a sensor's mean).
    """
    for name, values in given.items():
        _check_values(name, values)
    missing = [name for name in ("mean", "std") if name not in given]
    if missing:
        (absent,) = missing
        (present,) = set(given) & {"mean", "std"}
        raise ValueError(
            f"{present}= given without {absent}=: give both, one value per input band (in_chans={in_chans}), "
            f"e.g. create_model(..., mean=<{in_chans} values>, std=<{in_chans} values>)"
        )
    mean, std = _check_statistics(given["mean"], given["std"])
    if len(mean) != in_chans:
        raise ValueError(
            f"mean/std have {len(mean)} values but the model takes in_chans={in_chans} bands: give one value per "
            f"band, e.g. create_model(..., mean=<{in_chans} values>, std=<{in_chans} values>); statistics you give "
            "are not cycled over the bands"
        )
    return {"mean": mean, "std": std}


@dataclass(frozen=True)
class PretrainedCfg(JsonRecord):
    """What a set of weights is: where it comes from, what it predicts and how it was tested.

    ``mean`` / ``std`` hold one value per input band, on the 0..255 scale (mmseg's convention; `for_in_chans`
    spreads three RGB values over another band count). ``test`` holds how the weights are tested (`TestSettings`,
    mmseg's semantics); ``crop_size`` is the training crop, the slide window when a predict call asks for slide
    inference of weights that define none. ``bands``: the raster bands the weights were trained on (1-based, as GDAL
    counts, in the order the model takes them), which prediction reads from rasters and TIFF files unless told
    other bands (`deeplabv3p.inference.bands`); as many as the model's mean/std have values, or one for an RGB
    model (gray repeated: `deeplabv3p.fields.band_counts`); None: the rule for the band count.
    """

    architecture: str = ""
    tag: str = ""
    dataset: str = ""
    num_classes: int | None = None
    classes: tuple[str, ...] = ()
    palette: tuple[tuple[int, int, int], ...] = ()
    mean: tuple[float, ...] = (123.675, 116.28, 103.53)
    std: tuple[float, ...] = (58.395, 57.12, 57.375)
    bands: tuple[int, ...] | None = None
    reduce_zero_label: bool = False
    ignore_index: int = 255
    crop_size: tuple[int, int] | None = None
    test: TestSettings = field(default_factory=TestSettings)
    align_corners: bool = False
    metrics: dict[str, Any] = field(default_factory=dict)
    hf_hub_id: str | None = None
    url: str | None = None
    sha256_prefix: str | None = None
    source_config: str | None = None
    iters: int | None = None
    license: str | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        mean, std = _check_statistics(self.mean, self.std)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        if self.bands is not None:
            # the band counts the readers accept for a model of len(mean) input channels (gray repeated for RGB)
            bands = check_band_count("bands", check_bands("bands", self.bands), len(mean))
            object.__setattr__(self, "bands", bands)
        check_records(self)
        if self.classes and self.num_classes is not None and len(self.classes) != self.num_classes:
            raise ValueError(f"{len(self.classes)} class names given for num_classes={self.num_classes}")
        if self.palette and self.classes and len(self.palette) != len(self.classes):
            raise ValueError(f"{len(self.palette)} palette colours given for {len(self.classes)} classes")

    @property
    def name(self) -> str:
        """``architecture.tag``, the name `create_model` accepts."""
        return f"{self.architecture}.{self.tag}" if self.tag else self.architecture

    def for_in_chans(self, in_chans: int) -> PretrainedCfg:
        """These metadata for a model of `in_chans` input bands: unchanged when mean/std have one value per band.

        Three (RGB) values are spread over another band count the way timm's ``adapt_input_conv`` spreads the RGB
        kernels of a first conv: cycled (R, G, B, R, ...) for two or more bands, averaged for one band (timm sums
        the three kernels). Any other count is an error naming both numbers.
        """
        count = len(self.mean)
        if count == in_chans:
            return self
        if count != 3:
            raise ValueError(
                f"mean/std have {count} values but the model takes in_chans={in_chans} bands: give one value per "
                f"band, e.g. create_model(..., mean=<{in_chans} values>, std=<{in_chans} values>)"
            )
        if in_chans == 1:
            return self.replace(mean=(sum(self.mean) / 3,), std=(sum(self.std) / 3,), bands=None)
        return self.replace(
            mean=tuple(self.mean[i % 3] for i in range(in_chans)),
            std=tuple(self.std[i % 3] for i in range(in_chans)),
            bands=None,
        )

    def for_new_classes(self, num_classes: int, architecture: str | None = None) -> PretrainedCfg:
        """Metadata of a model started from these weights with another class count (fine-tuning).

        Keeps what still holds for the new model: input normalization, crop and test-time settings, ignore index,
        align_corners and licence, plus a note naming these weights. Tag, dataset, classes, palette, label
        reduction, metrics and download sources describe the old weights and are dropped.
        """
        origin = self.name if self.tag else (self.hf_hub_id or self.architecture or "other weights")
        kept = ("mean", "std", "ignore_index", "crop_size", "test", "align_corners", "license")
        return PretrainedCfg(
            architecture=architecture or self.architecture,
            num_classes=num_classes,
            notes=(
                f"initialised from {origin} ({self.num_classes} classes); classifier re-initialised for "
                f"{num_classes} classes",
            ),
            **{name: getattr(self, name) for name in kept},
        )


def pretrained_cfg_for(config: ModelConfig, pretrained_cfg: PretrainedCfg | None = None) -> PretrainedCfg:
    """What the weights of a network built from `config` are (``model.pretrained_cfg``, what a saved model records).

    `pretrained_cfg` is the metadata of the weights it started from: kept as is when the class count still holds
    (`for_new_classes` when it does not), with the network's class count, align_corners and one mean/std value per
    input band (`for_in_chans`); None gives a record of the bare architecture.
    """
    if pretrained_cfg is None:
        return PretrainedCfg(
            architecture=config.architecture, num_classes=config.num_classes, align_corners=config.align_corners
        ).for_in_chans(config.in_chans)
    if pretrained_cfg.num_classes not in (None, config.num_classes):
        pretrained_cfg = pretrained_cfg.for_new_classes(config.num_classes, config.architecture)
    described = pretrained_cfg.replace(num_classes=config.num_classes, align_corners=config.align_corners)
    return described.for_in_chans(config.in_chans)
