"""Bad-input catalogue, saved models and weight files: each case is an error of a stated type whose message names
the file or argument at fault; saving leaves the old model or the new one, whatever happens midway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nets
import pytest
import torch
from fault_helpers import fork, on_a_full_disk, wait

import deeplabv3p
from deeplabv3p import atomic
from deeplabv3p.models.config import ModelConfig
from deeplabv3p.pretrained import saved as saved_format
from deeplabv3p.pretrained.config import DESCRIPTIVE_FIELDS, PretrainedCfg
from deeplabv3p.pretrained.state_dict import WEIGHTS_NAME, read_state_dict, save_state_dict

NARROW = {"encoder": "resnet18", **nets.NARROW}  # the generic architecture on the tests' narrow ResNet-18
# torch's own text for a refused pickle advises unsafe loading: the library never repeats it
UNSAFE_ADVICE = ("weights_only=False", "weights_only` set to `False")


def tiny(num_classes: int = 3, seed: int = 0, **overrides) -> deeplabv3p.DeepLabV3Plus:
    torch.manual_seed(seed)
    return deeplabv3p.create_model("deeplabv3plus", num_classes=num_classes, **{**NARROW, **overrides}).eval()


@pytest.fixture(scope="module")
def model_a() -> deeplabv3p.DeepLabV3Plus:
    return tiny(3, seed=0)


@pytest.fixture(scope="module")
def model_b() -> deeplabv3p.DeepLabV3Plus:
    """Another architecture (5 classes, stride 8) with other weights: no mix of A and B can pass for either."""
    return tiny(5, seed=1, output_stride=8)


@pytest.fixture
def saved(tmp_path: Path, model_a) -> Path:
    return model_a.save_pretrained(tmp_path / "model")


def assert_reloads_as(folder: Path, model: deeplabv3p.DeepLabV3Plus) -> None:
    """`folder` loads back as exactly `model`: configuration, metadata and every tensor bit for bit."""
    loaded = deeplabv3p.create_model(str(folder))
    assert loaded.config == model.config
    assert loaded.pretrained_cfg == model.pretrained_cfg
    ours, theirs = model.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def leftovers(*folders: Path) -> list[str]:
    return sorted(p.name for folder in folders for p in folder.iterdir() if atomic.is_temporary(p.name))


# ----- a saved folder that does not hold what its config says -------------------------------------------------------


def _edit_config(folder: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads((folder / "config.json").read_text())
    edit(data)
    (folder / "config.json").write_text(json.dumps(data))


def _drop(section: str, name: str) -> Callable[[dict], None]:
    return lambda data: data[section].pop(name)


def _set(section: str, name: str, value: object) -> Callable[[dict], None]:
    def edit(data: dict) -> None:
        data[section][name] = value
        if section == "model_config" and name == "num_classes":
            data["pretrained_cfg"]["num_classes"] = value

    return edit


def _other_weights(folder: Path) -> None:
    save_state_dict(tiny(5).state_dict(), folder / WEIGHTS_NAME)


def _weights_without(key: str) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        state = read_state_dict(folder)
        del state[key]
        save_state_dict(state, folder / WEIGHTS_NAME)

    return edit


def _weights_with_extra(folder: Path) -> None:
    state = read_state_dict(folder)
    state["decoder.extra.weight"] = torch.zeros(2)
    save_state_dict(state, folder / WEIGHTS_NAME)


def _write_weights(data: bytes | None) -> Callable[[Path], None]:
    def edit(folder: Path) -> None:
        path = folder / WEIGHTS_NAME
        path.write_bytes(path.read_bytes()[:300] if data is None else data)

    return edit


MODEL_FIELDS = [f for f in ModelConfig.__dataclass_fields__]
REQUIRED_CFG_FIELDS = [f for f in PretrainedCfg.__dataclass_fields__ if f not in DESCRIPTIVE_FIELDS]

# (case id, how the saved folder is damaged, error type, the file the message must name, other words it must hold)
SAVED_CASES = [
    ("weights-of-5-classes", _other_weights, ValueError, WEIGHTS_NAME, ["classifier.conv.weight", "(5, 16, 1, 1)"]),
    ("weights-missing-a-key", _weights_without("decoder.low_level.conv.weight"), ValueError, WEIGHTS_NAME,
     ["missing", "decoder.low_level.conv.weight"]),
    ("weights-extra-key", _weights_with_extra, ValueError, WEIGHTS_NAME, ["not in the model", "decoder.extra.weight"]),
    ("weights-empty", _write_weights(b""), ValueError, WEIGHTS_NAME, ["empty"]),
    ("weights-truncated", _write_weights(None), ValueError, WEIGHTS_NAME, ["safetensors"]),
    ("weights-random", _write_weights(bytes(range(256)) * 4), ValueError, WEIGHTS_NAME, ["safetensors"]),
    ("weights-gone", lambda f: (f / WEIGHTS_NAME).unlink(), FileNotFoundError, WEIGHTS_NAME, []),
    ("config-gone", lambda f: (f / "config.json").unlink(), FileNotFoundError, "config.json", []),
    ("config-not-json", lambda f: (f / "config.json").write_text("{"), ValueError, "config.json", ["JSON"]),
    ("config-no-pretrained-cfg", lambda f: _edit_config(f, lambda d: d.pop("pretrained_cfg")), ValueError,
     "config.json", ["pretrained_cfg"]),
    *[(f"config-no-{name}", lambda f, n=name: _edit_config(f, _drop("model_config", n)), ValueError, "config.json",
       [name]) for name in MODEL_FIELDS],
    *[(f"config-no-pretrained-{name}", lambda f, n=name: _edit_config(f, _drop("pretrained_cfg", n)), ValueError,
       "config.json", [name]) for name in REQUIRED_CFG_FIELDS],
    ("config-hub-encoder", lambda f: _edit_config(f, _set("model_config", "encoder", "hf-hub:timm/resnet18.a1_in1k")),
     ValueError, "config.json", ["hf-hub:timm/resnet18.a1_in1k"]),
    ("config-local-dir-encoder", lambda f: _edit_config(f, _set("model_config", "encoder", "local-dir:/tmp/x")),
     ValueError, "config.json", ["local-dir:/tmp/x"]),
    ("config-absurd-num-classes", lambda f: _edit_config(f, _set("model_config", "num_classes", 10**12)), ValueError,
     "config.json", ["num_classes", "65536"]),
    ("config-absurd-width", lambda f: _edit_config(f, _set("model_config", "decoder_channels", 10**7)), ValueError,
     "config.json", ["decoder_channels"]),
    ("config-num-classes-str", lambda f: _edit_config(f, _set("model_config", "num_classes", "3")), TypeError,
     "config.json", ["num_classes"]),
    ("config-aspp-rates-int", lambda f: _edit_config(f, _set("model_config", "aspp_rates", 6)), TypeError,
     "config.json", ["aspp_rates"]),
    ("config-encoder-kwargs-pretrained",
     lambda f: _edit_config(f, _set("model_config", "encoder_kwargs", {"pretrained": True})), ValueError,
     "config.json", ["pretrained", "encoder_pretrained"]),
    ("config-encoder-kwargs-checkpoint",
     lambda f: _edit_config(f, _set("model_config", "encoder_kwargs", {"checkpoint_path": "x.pth"})), ValueError,
     "config.json", ["checkpoint_path"]),
    ("config-class-count-disagrees", lambda f: _edit_config(f, _set("pretrained_cfg", "num_classes", 4)), ValueError,
     "config.json", ["num_classes=4"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("damage", "exc", "file", "words"), [c[1:] for c in SAVED_CASES], ids=[c[0] for c in SAVED_CASES]
)
def test_damaged_saved_folder(saved, damage, exc, file, words):
    damage(saved)
    with pytest.raises(exc) as info:
        deeplabv3p.create_model(str(saved))
    message = str(info.value)
    assert str(saved / file) in message or (str(saved) in message and file in message), message
    for word in words:
        assert word in message, (word, message)


def test_fine_tuning_a_saved_folder_stays_explicit(saved, model_a):
    """The head is re-initialised only for a num_classes= that asks for it; the rest loads exactly."""
    with pytest.warns(UserWarning, match="left freshly initialised"):
        tuned = deeplabv3p.create_model(str(saved), num_classes=7)
    assert tuned.num_classes == 7
    assert torch.equal(
        tuned.state_dict()["decoder.low_level.conv.weight"], model_a.state_dict()["decoder.low_level.conv.weight"]
    )


# ----- weight files -------------------------------------------------------------------------------------------------


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def _pth(obj: object) -> Callable[[Path], None]:
    return lambda path: torch.save(obj, path)


def _torch_file_cut(path: Path) -> None:
    torch.save({"w": torch.zeros(64)}, path)
    path.write_bytes(path.read_bytes()[:200])


FILE_CASES = [
    ("safetensors-empty", "w.safetensors", lambda p: p.write_bytes(b""), ["empty"]),
    ("safetensors-random", "w.safetensors", lambda p: p.write_bytes(os.urandom(300)), ["safetensors"]),
    ("safetensors-truncated", "w.safetensors",
     lambda p: p.write_bytes(save_state_dict(tiny().state_dict(), p).read_bytes()[:1000]), ["safetensors"]),
    ("pth-empty", "w.pth", lambda p: p.write_bytes(b""), ["empty"]),
    ("pth-random", "w.pth", lambda p: p.write_bytes(os.urandom(300)), ["torch.save"]),
    ("pth-truncated", "w.pth", _torch_file_cut, ["truncated"]),
    ("pth-pickled-code", "w.pth", _pth({"state_dict": {"w": torch.zeros(1)}, "meta": _Payload()}), ["system"]),
    ("pth-a-list", "w.pth", _pth([torch.zeros(1)]), ["no state dict"]),
    ("pth-non-tensor-values", "w.pth", _pth({"w": 1}), ["no state dict"]),
    ("unknown-suffix", "w.txt", lambda p: p.write_text("x"), [".safetensors"]),
    ("no-such-file", "w.safetensors", lambda p: None, ["does not exist"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "make", "words"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
@pytest.mark.parametrize("through", ["read_state_dict", "create_model"])
def test_unreadable_weight_file(tmp_path, capfd, name, make, words, through):
    path = tmp_path / name
    make(path)
    exc = FileNotFoundError if not path.exists() else ValueError
    with pytest.raises(exc) as info:
        if through == "read_state_dict":
            read_state_dict(path)
        else:
            deeplabv3p.create_model("deeplabv3plus", pretrained=str(path), **NARROW)
    message = str(info.value)
    assert str(path) in message and all(word in message for word in words), message
    assert not any(advice in message for advice in UNSAFE_ADVICE), message
    assert "must never run" not in capfd.readouterr().out


# ----- create_model arguments ----------------------------------------------------------------------------------------

ARG_CASES = [
    ("model-name-int", (123,), {}, TypeError, ["model_name", "123"]),
    ("model-name-none", (None,), {}, TypeError, ["model_name"]),
    ("model-name-empty", ("",), {}, TypeError, ["model_name"]),
    ("pretrained-int", ("deeplabv3plus",), {"pretrained": 3}, TypeError, ["pretrained"]),
    ("checkpoint-path-int", ("deeplabv3plus",), {"checkpoint_path": 5}, TypeError, ["checkpoint_path"]),
    ("encoder-pretrained-str", ("deeplabv3plus",), {"encoder_pretrained": "yes"}, TypeError, ["encoder_pretrained"]),
    ("unknown-kwarg", ("deeplabv3plus",), {"colour": 1}, TypeError, ["colour"]),
    ("num-classes-absurd", ("deeplabv3plus",), {"num_classes": 10**12}, ValueError, ["num_classes", "65536"]),
    ("in-chans-absurd", ("deeplabv3plus",), {"in_chans": 10**6}, ValueError, ["in_chans", "4096"]),
    ("decoder-channels-absurd", ("deeplabv3plus",), {"decoder_channels": 10**7}, ValueError, ["decoder_channels"]),
    ("low-level-absurd", ("deeplabv3plus",), {"low_level_channels": 10**7}, ValueError, ["low_level_channels"]),
    ("aux-channels-absurd", ("deeplabv3plus",), {"aux_channels": 10**7}, ValueError, ["aux_channels"]),
    ("aspp-rates-int", ("deeplabv3plus",), {"aspp_rates": 6}, TypeError, ["aspp_rates"]),
    ("multi-grid-str", ("deeplabv3plus",), {"multi_grid": "124"}, TypeError, ["multi_grid"]),
    ("encoder-kwargs-list", ("deeplabv3plus",), {"encoder_kwargs": [1]}, TypeError, ["encoder_kwargs"]),
    ("encoder-kwargs-int-key", ("deeplabv3plus",), {"encoder_kwargs": {1: 2}}, TypeError, ["encoder_kwargs", "1"]),
    ("encoder-kwargs-unknown", ("deeplabv3plus",), {"encoder_kwargs": {"bogus": 1}}, ValueError,
     ["encoder_kwargs", "bogus", "resnet18"]),
    *[(f"encoder-kwargs-{key}", ("deeplabv3plus",), {"encoder_kwargs": {key: value}}, ValueError, [key, hint])
      for key, value, hint in [("pretrained", True, "encoder_pretrained"), ("features_only", False, "features_only"),
                               ("in_chans", 4, "in_chans="), ("output_stride", 8, "output_stride="),
                               ("checkpoint_path", "x.pth", "checkpoint_path=")]],
]  # fmt: skip


@pytest.mark.parametrize(("args", "kwargs", "exc", "words"), [c[1:] for c in ARG_CASES], ids=[c[0] for c in ARG_CASES])
def test_bad_create_model_argument(args, kwargs, exc, words):
    base = {} if args[0] != "deeplabv3plus" else {"encoder": "resnet18"}
    with pytest.raises(exc) as info:
        deeplabv3p.create_model(*args, **{**base, **kwargs})
    message = str(info.value)
    assert all(word in message for word in words), message
    assert "cannot give output_stride" not in message  # an encoder_kwargs problem is not a stride problem


def test_a_checkpoint_of_another_class_count_is_refused_without_num_classes(tmp_path):
    path = save_state_dict(tiny(5).state_dict(), tmp_path / "five.safetensors")
    arch = {**NARROW, "encoder_kwargs": dict(NARROW["encoder_kwargs"])}
    with pytest.raises(ValueError) as info:
        deeplabv3p.create_model("deeplabv3plus", pretrained=str(path), **arch)
    assert str(path) in str(info.value) and "num_classes=5" in str(info.value)
    with pytest.warns(UserWarning, match="left freshly initialised"):
        tuned = deeplabv3p.create_model("deeplabv3plus", pretrained=str(path), num_classes=3, **arch)
    assert tuned.num_classes == 3


# ----- where save_pretrained may write ------------------------------------------------------------------------------


def test_empty_path_is_refused_and_the_working_directory_untouched(tmp_path, monkeypatch, model_a):
    (tmp_path / "README.md").write_text("my project")
    (tmp_path / "config.json").write_text('{"mine": true}')
    monkeypatch.chdir(tmp_path)
    for bad in ("", "  "):
        with pytest.raises(ValueError, match=r"save_directory must name a folder.*'\.'"):
            model_a.save_pretrained(bad)
    assert (tmp_path / "README.md").read_text() == "my project"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "config.json"]


def _file(tmp: Path) -> Path:
    (tmp / "f.txt").write_text("x")
    return tmp / "f.txt"


def _folder_with(name: str, text: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / "proj").mkdir()
        (tmp / "proj" / name).write_text(text)
        return tmp / "proj"

    return make


SAVE_CASES = [
    ("none", lambda tmp: None, TypeError, ["save_directory"]),
    ("a-file", _file, ValueError, ["f.txt", "not a folder"]),
    ("foreign-folder", _folder_with("README.md", "mine"), ValueError, ["proj", "overwrite=True", "README.md"]),
    ("foreign-config", _folder_with("config.json", '{"a": 1}'), ValueError, ["proj", "overwrite=True"]),
]


@pytest.mark.parametrize(("make", "exc", "words"), [c[1:] for c in SAVE_CASES], ids=[c[0] for c in SAVE_CASES])
def test_bad_save_target(tmp_path, model_a, make, exc, words):
    target = make(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(exc) as info:
        model_a.save_pretrained(target)
    assert all(word in str(info.value) for word in words), str(info.value)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_overwrite_true_saves_into_a_foreign_folder_keeping_its_other_files(tmp_path, model_a):
    (tmp_path / "README.md").write_text("mine")
    (tmp_path / "data.csv").write_text("1,2")
    model_a.save_pretrained(tmp_path, overwrite=True)
    assert_reloads_as(tmp_path, model_a)
    assert (tmp_path / "data.csv").read_text() == "1,2"


def test_a_hub_encoder_is_not_saved(tmp_path, model_a):
    model = tiny()
    model.config = model.config.replace(encoder="hf-hub:timm/resnet18.a1_in1k")
    with pytest.raises(ValueError, match=r"hf-hub:timm/resnet18.a1_in1k"):
        model.save_pretrained(tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_files_get_the_usual_permissions(tmp_path, model_a, umask):
    previous = os.umask(umask)
    try:
        folder = model_a.save_pretrained(tmp_path / "m")
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert modes == dict.fromkeys(saved_format.SAVED_FILES, 0o666 & ~umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask


# ----- overwriting a saved model: the old one or the new one, never a mix -------------------------------------------


@pytest.fixture(params=["exchange", "two-renames"])
def swap(request, monkeypatch) -> str:
    """Both ways the new folder takes the old one's place: one exchange (Linux) and the portable two renames."""
    if request.param == "two-renames":
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    return request.param


def test_overwrite_replaces_the_model_and_keeps_other_files(saved, model_b, swap):
    (saved / "notes.txt").write_text("keep me")
    (saved / "sub").mkdir()
    (saved / "sub" / "x.json").write_text("{}")
    model_b.save_pretrained(saved)
    assert_reloads_as(saved, model_b)
    assert (saved / "notes.txt").read_text() == "keep me" and (saved / "sub" / "x.json").read_text() == "{}"
    assert leftovers(saved, saved.parent) == []


def test_saving_from_inside_the_folder_keeps_the_working_directory(saved, model_b, monkeypatch, swap):
    monkeypatch.chdir(saved)
    model_b.save_pretrained(".")
    assert Path.cwd() == saved.resolve() and (Path("config.json")).is_file()
    assert_reloads_as(saved, model_b)


def _fail_weights_midway(monkeypatch):
    from deeplabv3p.pretrained import state_dict

    def save_file(tensors, path, metadata=None):
        Path(path).write_bytes(b"\0" * 1000)  # half a file, then the disk fills
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(state_dict, "save_file", save_file)


def _fail_text(name: str):
    def patch(monkeypatch):
        real = saved_format.atomic_write_text

        def write(path, text):
            if Path(path).name == name:
                raise OSError(5, "Input/output error", str(path))
            real(path, text)

        monkeypatch.setattr(saved_format, "atomic_write_text", write)

    return patch


@pytest.mark.parametrize(
    "fail",
    [_fail_weights_midway, _fail_text("README.md"), _fail_text("config.json")],
    ids=["weights", "card", "config"],
)
def test_a_save_failing_midway_leaves_the_old_model(saved, model_a, model_b, monkeypatch, fail, swap):
    fail(monkeypatch)
    with pytest.raises(OSError) as info:
        model_b.save_pretrained(saved)
    assert str(saved) in str(info.value) and ".incomplete" not in str(info.value)  # names the target, not a temporary
    monkeypatch.undo()
    assert_reloads_as(saved, model_a)
    assert leftovers(saved, saved.parent) == []


def test_an_interrupted_in_place_save_never_loads(saved, model_b, monkeypatch):
    """Where the folder cannot be swapped (a mount point), config.json goes first and comes back last."""
    monkeypatch.setattr(saved_format, "_can_swap", lambda folder: False)
    _fail_text("README.md")(monkeypatch)
    with pytest.raises(OSError):
        model_b.save_pretrained(saved)
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        deeplabv3p.create_model(str(saved))
    monkeypatch.setattr(saved_format, "atomic_write_text", atomic.atomic_write_text)
    model_b.save_pretrained(saved)
    assert_reloads_as(saved, model_b)


def test_disk_full_in_a_child_process_leaves_the_old_model(saved, model_a, model_b):
    """Every write past 64 KiB fails with EFBIG, as on a full disk: the old model stays, nothing is left over."""
    error = on_a_full_disk(lambda: model_b.save_pretrained(saved), 64 * 1024)
    assert "File too large" in error and str(saved / WEIGHTS_NAME) in error, error
    assert_reloads_as(saved, model_a)
    assert leftovers(saved, saved.parent) == []


def test_a_killed_save_leaves_the_old_model_and_the_next_save_cleans_up(saved, model_a, model_b, tmp_path):
    marker = tmp_path / "weights-written"

    def child() -> int:
        def stall(path, text):  # the weights are written; hang before the model card and config
            marker.touch()
            time.sleep(60)

        saved_format.atomic_write_text = stall
        model_b.save_pretrained(saved)
        return 0

    pid = fork(child)
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    assert wait(pid) == -signal.SIGKILL and marker.exists()
    assert_reloads_as(saved, model_a)
    stale = leftovers(saved, saved.parent)
    assert len(stale) == 1 and stale[0].startswith(f".{saved.name}.{pid}-"), stale
    model_b.save_pretrained(saved)
    assert_reloads_as(saved, model_b)
    assert leftovers(saved, saved.parent) == []


def _dead_pid() -> int:
    """The process id of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_save_removes_stale_temporaries_of_its_own_names(saved, model_a):
    dead = _dead_pid()
    stale = [
        saved / f".model.safetensors.{dead}-0123456789ab.incomplete",
        saved / ".config.json.0123456789ab.incomplete",  # no process id: an older version's
    ]
    staging = saved.parent / f".{saved.name}.{dead}-0123456789ab.incomplete"
    other = saved / f".notes.txt.{dead}-0123456789ab.incomplete"  # not a name save_pretrained writes
    for path in (*stale, other):
        path.write_bytes(b"x")
    staging.mkdir()
    (staging / WEIGHTS_NAME).write_bytes(b"x")
    model_a.save_pretrained(saved)
    assert not any(p.exists() for p in (*stale, staging))
    assert other.read_bytes() == b"x"
    assert_reloads_as(saved, model_a)


def test_temporaries_of_a_live_writer_are_kept(tmp_path):
    live = tmp_path / f".model.safetensors.{os.getpid()}-0123456789ab.incomplete"
    dead = tmp_path / f".model.safetensors.{_dead_pid()}-0123456789ab.incomplete"
    live.write_bytes(b"x")
    dead.write_bytes(b"x")
    assert atomic.remove_stale(tmp_path, [WEIGHTS_NAME]) == [dead]
    assert live.exists()
