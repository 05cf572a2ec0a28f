"""The model zoo: the mmseg architectures (code, below) and the 43 published DeepLabV3+ weights (data, ``zoo.json``).

``zoo.json`` mirrors mmsegmentation's DeepLabV3+ results table (``configs/deeplabv3plus``, upstream ``b040e14``):
``datasets`` (display name, class names, RGB palette, ``reduce_zero_label``, test settings by training crop
``"HxW"``; ``derive`` makes one from another, e.g. Pascal Context 59 is Pascal Context less its first class),
``defaults`` shared by every row (mmseg's mean/std, ignore index, ``--aug-test`` ratios, licence) and ``models``,
one record a row keyed by `PretrainedCfg`'s flat field names (its test settings as ``test_scale``, ``test_mode``,
``slide_crop``..., see `deeplabv3p.fields.flat_fields`); a row's keys override its crop's settings, which override the
defaults. Tags are ``DATASET_CROP_ITERS`` (``_amp`` for the FP16 row). Nothing here builds or downloads anything.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, NamedTuple, TypedDict

from ..fields import flat_fields
from ..models.config import ModelConfig, OutputStride
from .config import PretrainedCfg


def _mmseg_resnet(
    depth: int, deep_stem: bool, output_stride: OutputStride = 8, multi_grid: tuple[int, ...] | None = None
) -> dict[str, Any]:
    """An mmseg ResNet-D8/D16 DeepLabV3+ as ModelConfig fields (timm ResNet + mmseg dilation policy)."""
    narrow = depth < 50
    return dict(
        encoder=f"resnet{depth}",
        encoder_kwargs={"stem_type": "deep", "stem_width": 32} if deep_stem else {},
        output_stride=output_stride,
        dilation_policy="mmseg",
        multi_grid=multi_grid,
        num_classes=19,
        decoder_channels=128 if narrow else 512,
        low_level_channels=12 if narrow else 48,
        aux_head=True,
        aux_channels=64 if narrow else 256,
    )


_ARCHITECTURE_FIELDS: dict[str, dict[str, Any]] = {
    "deeplabv3plus": {},
    "deeplabv3plus_r18_d8": _mmseg_resnet(18, deep_stem=True),
    "deeplabv3plus_r50_d8": _mmseg_resnet(50, deep_stem=True),
    "deeplabv3plus_r101_d8": _mmseg_resnet(101, deep_stem=True),
    "deeplabv3plus_r101_d16_mg124": _mmseg_resnet(101, deep_stem=True, output_stride=16, multi_grid=(1, 2, 4)),
    "deeplabv3plus_r18b_d8": _mmseg_resnet(18, deep_stem=False),
    "deeplabv3plus_r50b_d8": _mmseg_resnet(50, deep_stem=False),
    "deeplabv3plus_r101b_d8": _mmseg_resnet(101, deep_stem=False),
}

ARCHITECTURES: dict[str, ModelConfig] = {
    name: ModelConfig(architecture=name, **fields) for name, fields in _ARCHITECTURE_FIELDS.items()
}


class DatasetInfo(TypedDict):
    """What a zoo dataset's weights predict: display name, class names, RGB palette, label reduction."""

    display_name: str
    reduce_zero_label: bool
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]


class Zoo(NamedTuple):
    """``zoo.json`` parsed: the Hub organisation, the datasets and the pretrained configs by ``ARCH.TAG``."""

    hub_org: str
    datasets: dict[str, DatasetInfo]
    pretrained_cfgs: dict[str, PretrainedCfg]


# Row fields: PretrainedCfg's flat view, less those its dataset and its name determine; a dataset's settings by
# crop: the test settings and align_corners.
_ROW_FIELDS = tuple(
    name
    for name in flat_fields(PretrainedCfg)
    if name not in ("num_classes", "classes", "palette", "reduce_zero_label", "hf_hub_id")
)
_TEST_FIELDS = (
    *(name for name, (holder, _) in flat_fields(PretrainedCfg).items() if holder == "test"),
    "align_corners",
)
_ROW_REQUIRED = ("architecture", "tag", "dataset", "crop_size", "iters")
_METRICS = ("mIoU", "mIoU_ms_flip", "train_mem_gb", "fps", "fps_device")
_DATASET_REQUIRED = ("display_name", "reduce_zero_label", "classes", "palette", "test_by_crop")


def _object(where: str, data: Any) -> dict:
    if not isinstance(data, dict):
        raise TypeError(f"zoo.json {where} must be an object, got {type(data).__name__}")
    return data


def _check_keys(where: str, data: Any, accepted: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    """`data` as a dict whose keys are all `accepted` and include `required`; else an error naming `where`."""
    unknown, missing = sorted(set(_object(where, data)) - set(accepted)), [k for k in required if k not in data]
    if unknown or missing:
        problem = f"unknown key(s) {unknown}" if unknown else f"missing key(s) {missing}"
        raise ValueError(f"zoo.json {where}: {problem}; accepted keys are {sorted(accepted)}")
    return data


def _dataset(name: str, raw: dict[str, Any]) -> tuple[DatasetInfo, dict[str, dict[str, Any]]]:
    """Dataset `name` (its ``derive`` applied: the source's entry, classes/palette trimmed, own keys on top) and its
    test settings by crop."""
    where = f"dataset {name!r}"
    entry = _check_keys(where, raw[name], (*_DATASET_REQUIRED, "derive"), ("display_name",))
    if "derive" in entry:
        derive = _check_keys(f"{where} derive", entry["derive"], ("from", "drop_first_class"), ("from",))
        source = raw.get(derive["from"])
        if not isinstance(source, dict) or "derive" in source:
            raise ValueError(f"zoo.json {where} derives from {derive['from']!r}, which is not an underived dataset")
        skip = 1 if derive.get("drop_first_class", False) else 0
        trimmed = {"classes": source["classes"][skip:], "palette": source["palette"][skip:]}
        entry = {**source, **trimmed, **{k: v for k, v in entry.items() if k != "derive"}}
    _check_keys(where, entry, _DATASET_REQUIRED, _DATASET_REQUIRED)
    for crop, settings in _object(f"{where} test_by_crop", entry["test_by_crop"]).items():
        _check_keys(f"{where} test_by_crop {crop!r}", settings, _TEST_FIELDS)
    info = DatasetInfo(
        display_name=entry["display_name"],
        reduce_zero_label=entry["reduce_zero_label"],
        classes=tuple(entry["classes"]),
        palette=tuple(tuple(c) for c in entry["palette"]),
    )
    return info, entry["test_by_crop"]


def _pretrained_cfg(index: int, row: Any, zoo: dict[str, Any], datasets: dict[str, Any]) -> PretrainedCfg:
    where = f"model row {index}" + (f" ({row.get('architecture')}.{row.get('tag')})" if isinstance(row, dict) else "")
    _check_keys(where, row, _ROW_FIELDS, _ROW_REQUIRED)
    _check_keys(f"{where} metrics", row.get("metrics", {}), _METRICS)
    if row["architecture"] not in ARCHITECTURES:
        raise ValueError(f"zoo.json {where}: unknown architecture; known: {sorted(ARCHITECTURES)}")
    if row["dataset"] not in datasets:
        raise ValueError(f"zoo.json {where}: unknown dataset {row['dataset']!r}; known: {sorted(datasets)}")
    (info, test_by_crop), crop = datasets[row["dataset"]], "x".join(map(str, row["crop_size"]))
    if crop not in test_by_crop:
        raise ValueError(f"zoo.json {where}: dataset {row['dataset']!r} has no test_by_crop entry for crop {crop}")
    if not row["tag"].startswith(f"{row['dataset']}_{crop}_{row['iters'] // 1000}k"):
        raise ValueError(f"zoo.json {where}: the tag must start with DATASET_CROP_ITERS, {row['dataset']}_{crop}_..k")
    derived = {"num_classes": len(info["classes"]), "hf_hub_id": f"{zoo['hub_org']}/{row['architecture']}.{row['tag']}"}
    facts = {k: v for k, v in info.items() if k != "display_name"}
    return PretrainedCfg.from_flat({**zoo["defaults"], **test_by_crop[crop], **row, **facts, **derived})


def parse_zoo(data: Any) -> Zoo:
    """Validate ``zoo.json``'s content and build the zoo; a bad record is an error naming it."""
    top = ("hub_org", "defaults", "datasets", "models")
    zoo = _check_keys("top level", data, top, top)
    _check_keys("defaults", zoo["defaults"], _ROW_FIELDS)
    datasets = {name: _dataset(name, zoo["datasets"]) for name in _object("datasets", zoo["datasets"])}
    cfgs: dict[str, PretrainedCfg] = {}
    for index, row in enumerate(zoo["models"]):
        cfg = _pretrained_cfg(index, row, zoo, datasets)
        if cfgs.setdefault(cfg.name, cfg) is not cfg:
            raise ValueError(f"zoo.json model row {index}: {cfg.name} is listed twice")
    return Zoo(zoo["hub_org"], {name: info for name, (info, _) in datasets.items()}, cfgs)


def read_zoo_json() -> dict[str, Any]:
    """The ``zoo.json`` shipped with the package, parsed but not validated."""
    return json.loads(resources.files(__package__).joinpath("zoo.json").read_text(encoding="utf-8"))


HUB_ORG, DATASETS, PRETRAINED_CFGS = parse_zoo(read_zoo_json())
