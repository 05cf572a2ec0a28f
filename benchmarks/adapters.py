"""One adapter per library: build the same DeepLabV3+ and expose inference and a training step the same way.

- ``ours``: deeplabv3p.
- ``mmseg``: mmsegmentation's own config from inside its wheel, with our benchmark weights copied in (the key
  mapping is `deeplabv3p.pretrained.convert`'s, inverted), so its logits can be compared with ours pixel for pixel.
- ``smp``: segmentation_models_pytorch's ``DeepLabV3Plus`` on the same timm ResNet (deep stem where mmseg has one),
  output stride and ASPP width. Its head differs from mmseg's (1x1 ASPP projection, one separable conv after the
  concat, no multi-grid), so it is the closest alternative, not the same network; its weights are its own random ones.
- ``onnxruntime``: our model exported with `deeplabv3p.deploy.export` (and, for int8, quantized with
  `deeplabv3p.deploy.onnx_int8`), run by `OnnxSegmenter`, the predict backend, on onnxruntime's CPU provider.
- ``tensorrt``: our model exported with `deeplabv3p.deploy.export(..., format="tensorrt")` (ONNX -> a fixed-shape
  engine at the benchmark size, fp16 or fp32), run by `TensorRTSegmenter` on the GPU.
- every other deployment format that runs on a CPU (``openvino``, ``executorch``, ``litert``, ``ncnn``, ... as
  `deeplabv3p.deploy.FORMATS` lists them), by its name: exported with `deeplabv3p.deploy.export` and run by
  `deeplabv3p.deploy.load`'s backend, the same way for each (`deploy_formats`).
- ``ours`` with the ``auto`` backend (`build_auto`): `deeplabv3p.deploy.fastest` picks among the above on this
  machine (cached in the work folder) and its choice is timed.

Peers are optional: `available` says which import here, and nothing in deeplabv3p depends on them.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

import deeplabv3p
from deeplabv3p.pretrained.convert import convert_key
from deeplabv3p.pretrained.registry import PRETRAINED_CFGS
from deeplabv3p.pretrained.state_dict import load_into

LIBRARIES = ("ours", "mmseg", "smp", "onnxruntime", "tensorrt")
_REQUIREMENTS = {
    "ours": ("deeplabv3p",),
    "mmseg": ("mmseg", "mmcv", "mmengine"),
    "smp": ("segmentation_models_pytorch",),
    "onnxruntime": ("onnxruntime", "onnx"),
    "tensorrt": ("tensorrt", "onnx"),
}
IGNORE_INDEX = 255
AUX_WEIGHT = 0.4  # mmseg's loss weight of the FCN auxiliary head


def deploy_formats() -> list[str]:
    """The deployment formats benchmarked as libraries of their own: every one that runs on a CPU, but ONNX (the
    ``onnxruntime`` rows, fp32 and int8)."""
    from deeplabv3p.deploy.backend_names import runnable_formats

    return [f.name for f in runnable_formats() if f.name != "onnx"]


def _requirements(library: str) -> tuple[str, ...]:
    if library in _REQUIREMENTS:
        return _REQUIREMENTS[library]
    from deeplabv3p.deploy.formats import get_format

    fmt = get_format(library)
    return tuple(dict.fromkeys(fmt.export_packages + fmt.run_packages))


def available(library: str) -> tuple[bool, str]:
    """Whether `library` can run here, and a note saying why not."""
    missing = [m for m in _requirements(library) if importlib.util.find_spec(m) is None]
    if missing:
        return False, f"{library} skipped: {', '.join(missing)} not installed"
    return True, ""


def seed_cfg(architecture: str) -> deeplabv3p.PretrainedCfg:
    """The architecture's first Cityscapes row with published memory and fps: the seed table's row for it."""
    for cfg in PRETRAINED_CFGS.values():
        if cfg.architecture == architecture and cfg.dataset == "cityscapes" and "fps" in cfg.metrics:
            return cfg
    raise ValueError(f"{architecture!r} has no Cityscapes row with published fps; pick one of the seven mmseg models")


@dataclass
class Runner:
    """A built network and the calls the benchmark times."""

    model: nn.Module
    infer: Callable[[torch.Tensor], torch.Tensor]  # normalized NCHW batch -> logits at the input size
    train_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (batch, labels) -> scalar loss
    num_params: int
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # more fields of the case's result


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _seg_loss(logits: torch.Tensor, aux: torch.Tensor | None, labels: torch.Tensor) -> torch.Tensor:
    loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)
    if aux is not None:
        loss = loss + AUX_WEIGHT * F.cross_entropy(aux.float(), labels, ignore_index=IGNORE_INDEX)
    return loss


CALIBRATION_SEED = 40_000_000  # the INT8 rows' calibration (and held-out) images: seeds apart from the check images
# NNCF may lose at most 0.3% of the labels on its held-out images: 0.5% kept only 99.39-99.49% elsewhere
OPENVINO_MAX_DROP = 0.003


def quantized_path(fp32: Path, **settings: Any) -> Path:
    """Where the INT8 copy of the cached export `fp32` goes: beside it, named after it (its digest, see
    `cached_artifact`) and after the quantization `settings` (size, images, seed, allowed drop, the quantizer's
    version), so that a change to either makes the copy again."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return fp32.with_name(f"{fp32.stem}.int8-{key}{fp32.suffix}")


def cached_artifact(workdir: Path, stem: str, suffix: str, weights: Path, packages: tuple[str, ...] = ()) -> Path:
    """Where the benchmark caches a file it makes (an export, an INT8 copy) in `workdir`: `stem` + a digest of what
    the file is made from + `suffix`. The digest covers the source of `deeplabv3p.models` and `deeplabv3p.deploy`,
    the `weights` file (name, size, modification time) and the versions of torch and `packages`, so a change to the
    exporter, the quantizer or a runtime makes the file again instead of timing a stale one."""
    sources = sorted(
        p for package in ("models", "deploy") for p in (Path(deeplabv3p.__file__).parent / package).glob("*.py")
    )
    digest = hashlib.sha256()
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    stat = weights.stat()
    digest.update(f"{weights.name} {stat.st_size} {stat.st_mtime_ns}".encode())
    for package in ("torch", *packages):
        with contextlib.suppress(metadata.PackageNotFoundError):
            digest.update(f"{package} {metadata.version(package)}".encode())
    return workdir / f"{stem}-{digest.hexdigest()[:12]}{suffix}"


# --- ours ---------------------------------------------------------------------------------------------------------


def build_ours(architecture: str, weights: Path, device: torch.device) -> Runner:
    model = deeplabv3p.create_model(architecture)
    load_into(model, load_file(str(weights)))
    model.pretrained_cfg = seed_cfg(architecture)
    model = model.to(device).eval()

    def train_loss(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits, aux = model(x, return_aux=True)
        return _seg_loss(logits, aux, labels)

    return Runner(model, model, train_loss, _count(model))


# --- mmseg --------------------------------------------------------------------------------------------------------


def _install_mmcv_ops_shim() -> None:
    """Let mmseg import with mmcv-lite, which has no compiled ``mmcv.ops``.

    Four mmseg modules import ``point_sample`` or ``sigmoid_focal_loss`` from ``mmcv.ops`` at import time although
    DeepLabV3+ never calls them. A stand-in module defines those two names (raising if ever called) and fails any
    other lookup, so nothing silently runs without the real ops. With the full mmcv installed this does nothing.
    """
    if "mmcv.ops" in sys.modules:
        return
    try:
        import mmcv.ops  # noqa: F401  (the full mmcv build)

        return
    except Exception:
        sys.modules.pop("mmcv.ops", None)

    shim = types.ModuleType("mmcv.ops")
    shim.__doc__ = "Stand-in for mmcv.ops under mmcv-lite (installed by deeplabv3p's benchmarks)."

    def _unavailable(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("mmcv.ops is not available with mmcv-lite; install the full mmcv for this op")

    shim.point_sample = _unavailable
    shim.sigmoid_focal_loss = _unavailable

    def _getattr(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise ModuleNotFoundError(f"mmcv.ops.{name} is not available with mmcv-lite")

    shim.__getattr__ = _getattr  # type: ignore[attr-defined]
    sys.modules["mmcv.ops"] = shim


def mmseg_config(architecture: str):
    """mmseg's config of the seed row, from the ``.mim/configs`` folder inside the mmseg wheel, for one process."""
    _install_mmcv_ops_shim()
    import mmseg
    from mmengine.config import Config

    name = seed_cfg(architecture).source_config
    path = Path(mmseg.__file__).parent / ".mim" / "configs" / "deeplabv3plus" / f"{name}.py"
    if not path.is_file():
        raise FileNotFoundError(f"mmseg config {path} not found; is this mmsegmentation 1.x?")
    cfg = Config.fromfile(str(path))
    cfg.model.pretrained = None  # no ImageNet download
    cfg.model.backbone.init_cfg = None
    _sync_bn_to_bn(cfg.model)
    return cfg


def _sync_bn_to_bn(node: Any) -> None:
    """SyncBN needs a process group; one process uses plain BN, which computes the same."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "norm_cfg" and isinstance(value, dict) and value.get("type") == "SyncBN":
                value["type"] = "BN"
            else:
                _sync_bn_to_bn(value)
    elif isinstance(node, list | tuple):
        for value in node:
            _sync_bn_to_bn(value)


def build_mmseg_model(architecture: str) -> nn.Module:
    cfg = mmseg_config(architecture)
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    register_all_modules()
    return MODELS.build(cfg.model)


def ours_to_mmseg(mm_model: nn.Module, ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict in mmseg's key names (every mmseg key must have its counterpart)."""
    mapped, missing = {}, []
    for key in mm_model.state_dict():
        ours_key = convert_key(key)
        if ours_key is None or ours_key not in ours:
            missing.append(key)
        else:
            mapped[key] = ours[ours_key]
    if missing:
        raise ValueError(f"no deeplabv3p weight for mmseg keys {missing[:10]}")
    return mapped


def _mmseg_metas(x: torch.Tensor) -> list[dict[str, Any]]:
    shape = tuple(x.shape[2:])
    return [dict(img_shape=shape, ori_shape=shape, pad_shape=shape) for _ in range(x.shape[0])]


def build_mmseg(architecture: str, weights: Path, device: torch.device) -> Runner:
    model = build_mmseg_model(architecture)
    model.load_state_dict(ours_to_mmseg(model, load_file(str(weights))))
    model = model.to(device).eval()
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    def infer(x: torch.Tensor) -> torch.Tensor:
        return model.inference(x, _mmseg_metas(x))  # fresh metas each call: slide mode mutates them

    def train_loss(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        samples = []
        for meta, label in zip(_mmseg_metas(x), labels):
            sample = SegDataSample(metainfo=meta)
            sample.gt_sem_seg = PixelData(data=label[None])
            samples.append(sample)
        losses = model.loss(x, samples)
        loss, _ = model.parse_losses(losses)
        return loss

    return Runner(model, infer, train_loss, _count(model))


# --- smp ----------------------------------------------------------------------------------------------------------


def build_smp(architecture: str, weights: Path, device: torch.device) -> Runner:
    import segmentation_models_pytorch as smp

    config = deeplabv3p.pretrained.get_model_config(architecture)
    if config.output_stride not in (8, 16):
        raise ValueError(f"smp supports output stride 8 or 16, not {config.output_stride}")
    rates = config.resolved_aspp_rates()
    notes = ["smp head: 1x1 ASPP projection, one separable conv after the concat, own random weights"]
    if config.multi_grid is not None:
        notes.append("no multi-grid in smp")
    model = smp.DeepLabV3Plus(
        encoder_name=f"tu-{config.encoder}",
        encoder_weights=None,
        encoder_output_stride=config.output_stride,
        decoder_channels=config.decoder_channels,
        decoder_atrous_rates=tuple(r for r in rates if r != 1),
        classes=config.num_classes,
        **config.encoder_kwargs,  # deep stem for the V1c models, passed on to timm
    )
    model = model.to(device).eval()

    def train_loss(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return _seg_loss(model(x), None, labels)

    return Runner(model, model, train_loss, _count(model), note="; ".join(notes))


# --- onnxruntime --------------------------------------------------------------------------------------------------


def build_onnxruntime(
    architecture: str,
    weights: Path,
    device: torch.device,
    threads: int,
    workdir: Path,
    dtype: str = "fp32",
    size: tuple[int, int] = (512, 1024),
) -> Runner:
    """Our export run by `deeplabv3p.inference.onnx_runtime.OnnxSegmenter` (the predict backend), fp32 or int8.

    int8: `deeplabv3p.deploy.onnx_int8.quantize_onnx` calibrated on 8 dead-leaves images at the benchmark size
    (seeds apart from the check images), cached in `workdir` like the fp32 file.
    """
    from benchmarks.inputs import image_batches
    from deeplabv3p.deploy.onnx_int8 import quantize_onnx
    from deeplabv3p.deploy.onnx_runtime import OnnxSegmenter

    if device.type != "cpu":
        raise ValueError("the onnxruntime comparison runs on the CPU provider only")
    ours = build_ours(architecture, weights, device)
    path = cached_artifact(workdir, architecture, ".onnx", weights, ("onnx",))
    if not path.is_file():
        deeplabv3p.deploy.export(ours.model, path, input_size=(512, 512), check=False)
    opset = deeplabv3p.deploy.opset.DEFAULT_OPSET
    note = f"exported with deeplabv3p.deploy.export (opset {opset}), ORT_ENABLE_ALL"
    if dtype == "int8":
        count, version = 8, metadata.version("onnxruntime")
        int8 = quantized_path(path, size=list(size), images=count, seed=CALIBRATION_SEED, onnxruntime=version)
        if not int8.is_file():
            batches = image_batches(*size, batch=1, count=count, seed=CALIBRATION_SEED)
            quantize_onnx(path, int8, (x.numpy() for x in batches))
        path = int8
        note += (
            f"; INT8 QDQ (u8 activations, s8 per-channel weights), calibrated on {count} images at {size[0]}x{size[1]}"
        )
    segmenter = OnnxSegmenter(path, threads=threads or None)

    def no_training(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise ValueError("onnxruntime is inference only")

    return Runner(ours.model, segmenter, no_training, ours.num_params, note=note)


# --- TensorRT -----------------------------------------------------------------------------------------------------


def build_tensorrt(
    architecture: str, weights: Path, device: torch.device, workdir: Path, dtype: str, size: tuple[int, int]
) -> Runner:
    """Our export as a TensorRT engine (`deeplabv3p.deploy.tensorrt_export`) for exactly the benchmark size, batch 1,
    fp16 (``dtype="fp16"``) or full fp32 (TF32 off), cached in `workdir` (building one takes a minute or two), run
    by `TensorRTSegmenter` with torch CUDA tensors bound as its input and output."""
    from deeplabv3p.deploy.tensorrt_runtime import TensorRTSegmenter

    if device.type != "cuda":
        raise ValueError("TensorRT runs on a CUDA GPU only")
    if dtype not in ("fp16", "fp32"):
        raise ValueError(f"the TensorRT comparison is fp16 or fp32, not {dtype}")
    ours = build_ours(architecture, weights, torch.device("cpu"))
    path = cached_artifact(workdir, f"{architecture}_{size[0]}x{size[1]}_{dtype}", ".engine", weights, ("tensorrt",))
    if not path.is_file():
        deeplabv3p.deploy.export(ours.model, path, "tensorrt", input_size=size, dynamic=False, fp16=dtype == "fp16",
                                 check=False)  # fmt: skip  # the worker's own check compares the labels
    segmenter = TensorRTSegmenter(path, device=device)

    def no_training(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise ValueError("TensorRT is inference only")

    note = (f"TensorRT engine built from ONNX, fixed {size[0]}x{size[1]}, batch 1, {dtype}; peak memory counts "
            "torch's allocator only, not the engine's own")  # fmt: skip
    return Runner(ours.model, segmenter, no_training, ours.num_params, note=note)


def _no_training(x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    raise ValueError("an exported model is inference only")


def build_deployed(
    library: str,
    architecture: str,
    weights: Path,
    threads: int,
    workdir: Path,
    size: tuple[int, int],
    dtype: str = "fp32",
) -> Runner:
    """Our model exported to the deployment format `library` (dynamic shapes, traced at `size`, cached in
    `workdir`) and run by its `deeplabv3p.deploy.load` backend; agreement is the case's check, as for every row.

    int8 (openvino): `deeplabv3p.deploy.openvino_int8.quantize_openvino` with NNCF's accuracy control, calibrated on 8
    dead-leaves images at `size` and controlled on 8 more (PyTorch fp32's labels the target, at most 0.3% of them
    lost), cached like the fp32 file.
    """
    from deeplabv3p.deploy.formats import get_format

    fmt = get_format(library)
    ours = build_ours(architecture, weights, torch.device("cpu"))
    path = cached_artifact(workdir, f"{architecture}_{size[0]}x{size[1]}", fmt.suffix, weights, _requirements(library))
    dynamic = fmt.fixed_size is None  # LiteRT holds the benchmark size only
    if not path.exists():
        deeplabv3p.deploy.export(ours.model, path, fmt.name, input_size=size, dynamic=dynamic, check=False)
    note = f"exported with deeplabv3p.deploy.export(format={fmt.name!r}{'' if dynamic else ', dynamic=False'})"
    if dtype == "int8":
        if fmt.name != "openvino":
            raise ValueError(f"the int8 rows of deployment formats are OpenVINO's (NNCF), not {fmt.name}'s")
        path = _openvino_int8(path, ours.model, size)
        note += (
            f"; INT8 by NNCF with accuracy control (8 calibration + 8 held-out images at {size[0]}x{size[1]}, "
            "max drop 0.3%)"
        )
    segmenter = deeplabv3p.deploy.load(path, threads=threads or None)
    note += f", run by {type(segmenter).__name__}"
    return Runner(ours.model, segmenter, _no_training, ours.num_params, note=note)


def _openvino_int8(fp32: Path, model: torch.nn.Module, size: tuple[int, int]) -> Path:
    """The NNCF INT8 copy of the OpenVINO export `fp32` (made once, beside it)."""
    from benchmarks.inputs import image_batches
    from deeplabv3p.deploy.openvino_int8 import quantize_openvino, torch_reference

    count = 16  # the first half calibrates, the second is held out
    settings = dict(size=list(size), images=count, seed=CALIBRATION_SEED, max_drop=OPENVINO_MAX_DROP)
    int8 = quantized_path(fp32, **settings, nncf=metadata.version("nncf"))
    if not int8.exists():
        images = [x.numpy() for x in image_batches(*size, batch=1, count=count, seed=CALIBRATION_SEED)]
        half = count // 2
        quantize_openvino(fp32, int8, images[:half], held_out=images[half:], reference=torch_reference(model),
                          max_drop=OPENVINO_MAX_DROP)  # fmt: skip
    return int8


def build_auto(
    architecture: str,
    weights: Path,
    threads: int,
    workdir: Path,
    size: tuple[int, int],
    warmup: int = 1,
    runs: int = 3,
) -> Runner:
    """Our model run by what `deeplabv3p.deploy.fastest` picks on this machine at `size` (its decision cached in
    `workdir`), timing each candidate with the run's `warmup` and `runs`; the result carries the choice, its table
    and how long choosing took."""
    from deeplabv3p.deploy.selection import fastest
    from deeplabv3p.inference.backend import as_backend

    ours = build_ours(architecture, weights, torch.device("cpu"))
    started = time.perf_counter()
    segmenter, table = fastest(
        ours.model, size, threads=threads or None, warmup=warmup, runs=runs, cache_root=workdir / "backend-cache"
    )
    extra = {
        "auto_chosen": table.chosen,
        "auto_table": table.to_dict(),
        "auto_cached": table.cached,
        "auto_selection_s": time.perf_counter() - started,
    }
    note = f"deeplabv3p.deploy.fastest chose {table.chosen} ({'cached decision' if table.cached else 'measured'})"
    return Runner(ours.model, as_backend(segmenter), _no_training, ours.num_params, note=note, extra=extra)


def build(
    library: str,
    architecture: str,
    weights: Path,
    device: torch.device,
    threads: int,
    workdir: Path,
    dtype: str = "fp32",
    size: tuple[int, int] = (512, 1024),
) -> Runner:
    """Build `library`'s network for `architecture` with the benchmark weights (ours and mmseg); `dtype` and the
    benchmark input `size` matter to onnxruntime int8 (its calibration)."""
    if library == "ours":
        return build_ours(architecture, weights, device)
    if library == "mmseg":
        return build_mmseg(architecture, weights, device)
    if library == "smp":
        return build_smp(architecture, weights, device)
    if library == "onnxruntime":
        return build_onnxruntime(architecture, weights, device, threads, workdir, dtype, size)
    if library == "tensorrt":
        return build_tensorrt(architecture, weights, device, workdir, dtype, size)
    if library in deploy_formats():
        return build_deployed(library, architecture, weights, threads, workdir, size, dtype)
    raise ValueError(f"library must be one of {list(LIBRARIES)}, got {library!r}")


def library_versions() -> dict[str, str]:
    """Versions of everything that shapes the numbers, for the results stamp (installed peers only)."""
    import timm

    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": timm.__version__,
        "deeplabv3p": deeplabv3p.__version__,
    }
    peers = ("mmsegmentation", "mmcv", "mmcv-lite", "mmengine", "segmentation-models-pytorch", "onnx", "onnxruntime",
             "tensorrt", "openvino", "nncf", "executorch", "ai-edge-litert", "litert-torch", "ncnn",
             "pnnx")  # fmt: skip
    for dist in peers:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions
