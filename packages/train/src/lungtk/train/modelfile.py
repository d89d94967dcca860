"""Model files: one ``.safetensors`` file per network, its metadata enough to rebuild it.

The metadata (strings; the structured ones JSON) holds ``architecture`` and ``arch_args`` (rebuilt with
:func:`lungtk.train.architectures.build_architecture`), ``preprocessing`` (spacing, HU window, patch),
``task``, ``training`` (data, split sizes, the resolved configuration, steps, which checkpoint), ``metrics``
and ``lungtk_version``. :func:`load_model` is the one loader: ``lungtk train`` fine-tuning and every
component's ``default_weights`` / ``--weights NAME=FILE`` go through it, and it checks the architecture.

Reading the header (:func:`read_header`, :func:`describe`) needs neither torch nor safetensors.
"""

from __future__ import annotations

import json
import os
import struct
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lungtk.core import LungtkError, atomic_path

if TYPE_CHECKING:
    import torch
    from torch import nn

FORMAT = "lungtk-model"
FORMAT_VERSION = "1"
_MAX_HEADER = 100 * 1024 * 1024
_JSON_KEYS = ("arch_args", "preprocessing", "training", "metrics")
_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


def lungtk_version() -> str:
    try:
        return version("lungtk-train")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class ModelHeader:
    """What a model file says about itself, read from its header only."""

    path: Path
    metadata: dict[str, Any]
    tensors: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.metadata["architecture"])

    @property
    def arch_args(self) -> dict[str, Any]:
        return dict(self.metadata.get("arch_args") or {})

    @property
    def labels(self) -> str | None:
        """The classification task whose labels the network outputs (nodule, malignancy, texture,
        pathology), from its preprocessing or, for files that do not record it there, its training
        configuration (``labels`` of a classification run, ``positive_label`` of a joint head); None when
        it classifies nothing."""
        pre = self.metadata.get("preprocessing") or {}
        if pre.get("labels"):
            return str(pre["labels"])
        config = (self.metadata.get("training") or {}).get("config") or {}
        if pre.get("target") == "label":
            return str(config.get("labels") or "nodule")
        return str(config["positive_label"]) if config.get("positive_label") else None

    @property
    def parameters(self) -> int:
        count = 0
        for dtype, shape in self.tensors.values():
            if dtype.startswith(("F", "BF")):
                n = 1
                for s in shape:
                    n *= s
                count += n
        return count

    def as_dict(self) -> dict[str, Any]:
        dtypes = sorted({d for d, _ in self.tensors.values()})
        return {
            "file": str(self.path),
            "bytes": self.path.stat().st_size,
            **self.metadata,
            "tensors": len(self.tensors),
            "parameters": self.parameters,
            "dtypes": dtypes,
        }


def read_header(path: str | os.PathLike[str]) -> ModelHeader:
    """The metadata and tensor table of a lungtk model file; a clear error for anything else."""
    path = Path(path)
    if path.is_dir():
        raise LungtkError(f"{path}: is a folder; give a model file (a run's model.safetensors)")
    if not path.is_file():
        raise LungtkError(f"{path}: no such model file")
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if length <= 1 or length > min(_MAX_HEADER, size - 8):
            raise LungtkError(f"{path}: not a .safetensors model file (no valid header)")
        raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a table")
        tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
        end = 0
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            dtype, shape, (start, stop) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
            if not 0 <= start <= stop:
                raise ValueError(f"tensor {name}: bad offsets")
            end = max(end, stop)
            tensors[name] = (str(dtype), tuple(int(s) for s in shape))
        if 8 + length + end > size:
            raise ValueError("file is shorter than its tensors")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise LungtkError(f"{path}: not a .safetensors model file or truncated ({exc})") from None
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise LungtkError(
            f"{path}: a .safetensors file without lungtk metadata (no architecture to rebuild); "
            f"lungtk model files are written by `lungtk train`"
        )
    parsed: dict[str, Any] = dict(meta)
    for key in _JSON_KEYS:
        if key in parsed:
            try:
                parsed[key] = json.loads(parsed[key])
            except (TypeError, json.JSONDecodeError):
                raise LungtkError(
                    f"{path}: its metadata '{key}' is not valid JSON; the file is damaged"
                ) from None
    if "architecture" not in parsed:
        raise LungtkError(f"{path}: its lungtk metadata names no architecture; the file is damaged")
    return ModelHeader(path, parsed, tensors)


def describe(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Everything ``lungtk models info`` prints."""
    return read_header(path).as_dict()


# -- writing ----------------------------------------------------------------------------------------------


def state_tensors(model: nn.Module | Mapping[str, torch.Tensor], dtype: str = "float32") -> dict[str, Any]:
    """A model's (or a state dict's) tensors, contiguous and on the CPU; floats as ``dtype``, except those
    whose values ``dtype`` cannot hold (a BatchNorm's running variance of raw HU exceeds float16's 65504),
    which stay float32."""
    import torch

    state = model.state_dict() if hasattr(model, "state_dict") else model
    cast = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}.get(dtype)
    if cast is None:
        raise LungtkError(f"model file dtype {dtype!r}: use float32, float16 or bfloat16")
    out = {}
    for name, tensor in state.items():  # type: ignore[union-attr]
        t = tensor.detach().to("cpu")
        if t.is_floating_point() and (t.numel() == 0 or float(t.abs().max()) <= torch.finfo(cast).max):
            t = t.to(cast)
        out[name] = t.contiguous().clone()
    return out


def save_model(
    path: str | os.PathLike[str],
    model: nn.Module | Mapping[str, torch.Tensor],
    *,
    architecture: str,
    arch_args: Mapping[str, Any],
    preprocessing: Mapping[str, Any] | None = None,
    task: str = "",
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    dtype: str = "float32",
) -> Path:
    """Write ``model``'s weights and what rebuilds it, atomically. ``dtype="float16"`` halves a file for
    shipping; :func:`load_model` gives float32 weights back."""
    from safetensors.torch import save_file

    tensors = state_tensors(model, dtype)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": architecture,
        "arch_args": json.dumps(dict(arch_args), sort_keys=True),
        "preprocessing": json.dumps(dict(preprocessing or {}), sort_keys=True),
        "task": task,
        "training": json.dumps(dict(training or {}), sort_keys=True, default=str),
        "metrics": json.dumps(dict(metrics or {}), sort_keys=True),
        "lungtk_version": lungtk_version(),
        "dtype": dtype,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(path)


# -- loading ----------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    model: nn.Module
    header: ModelHeader

    @property
    def preprocessing(self) -> dict[str, Any]:
        return dict(self.header.metadata.get("preprocessing") or {})

    def input_spec(self) -> Any:
        """The network's input cube (:class:`lungtk.train.inputs.InputSpec`), checked."""
        from lungtk.train.inputs import InputSpec

        return InputSpec.from_preprocessing(self.preprocessing, self.header.path)


def check_architecture(header: ModelHeader, expected: str | Iterable[str] | None, who: str = "") -> None:
    if expected is None:
        return
    allowed = [expected] if isinstance(expected, str) else list(expected)
    if header.architecture not in allowed:
        task = header.metadata.get("task")
        made = f" (trained by task '{task}')" if task else ""
        needs = " or ".join(f"'{a}'" for a in allowed)
        raise LungtkError(
            f"{header.path} holds a '{header.architecture}' model{made}; {who or 'this'} needs {needs}: "
            f"pass a model file of that architecture"
        )


def read_tensors(header: ModelHeader) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(header.path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise LungtkError(f"{header.path}: its tensors cannot be read ({exc}); the file is damaged") from None


def load_model(
    path: str | os.PathLike[str],
    expected_arch: str | Iterable[str] | None = None,
    *,
    device: str = "cpu",
    who: str = "",
) -> LoadedModel:
    """Rebuild the network a model file describes, load its weights (float32) and put it in eval mode.

    ``expected_arch``: the architecture(s) the caller can use; another is an error that says which
    architecture the file holds. ``who`` names the caller in messages (``"segmenter 'resunet'"``).
    """
    from lungtk.train.architectures import build_architecture

    header = read_header(path)
    check_architecture(header, expected_arch, who)
    model = build_architecture(header.architecture, header.arch_args)
    tensors = read_tensors(header)
    reference = model.state_dict()
    missing = sorted(set(reference) - set(tensors))
    unexpected = sorted(set(tensors) - set(reference))
    if missing or unexpected:
        raise LungtkError(
            f"{header.path}: its tensors do not fit architecture '{header.architecture}' "
            f"({len(missing)} missing, e.g. {missing[:2]}; {len(unexpected)} unexpected, e.g. {unexpected[:2]})"
        )
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(reference[name].shape):
            raise LungtkError(
                f"{header.path}: tensor {name} has shape {tuple(tensor.shape)}, architecture "
                f"'{header.architecture}' with its arguments needs {tuple(reference[name].shape)}"
            )
        if tensor.is_floating_point():
            tensors[name] = tensor.to(reference[name].dtype)
    model.load_state_dict(tensors)
    model.eval()
    return LoadedModel(model.to(device), header)


def init_from(
    model: nn.Module, path: str | os.PathLike[str], expected_arch: str | Iterable[str] | None = None
) -> tuple[int, int]:
    """Copy into ``model`` the tensors of a model file whose name and shape match (fine-tuning);
    returns (copied, total in model). The file's architecture must be ``expected_arch`` (or one of them)
    when given."""
    header = read_header(path)
    check_architecture(header, expected_arch, "setting init")
    tensors = read_tensors(header)
    state = model.state_dict()
    matched = {
        k: v.to(state[k].dtype)
        for k, v in tensors.items()
        if k in state and tuple(v.shape) == tuple(state[k].shape)
    }
    if not matched:
        raise LungtkError(f"setting init={path}: none of its tensors fits this network")
    model.load_state_dict(matched, strict=False)
    return len(matched), len(state)


def convert_model(
    source: str | os.PathLike[str], target: str | os.PathLike[str], dtype: str = "float16"
) -> Path:
    """A copy of a model file with its floating-point tensors as ``dtype`` and the same metadata (shipped
    weights are float16: half the size; :func:`load_model` gives float32 back)."""
    from safetensors.torch import save_file

    header = read_header(source)
    tensors = state_tensors(read_tensors(header), dtype)
    with open(header.path, "rb") as fh:  # the metadata as stored (strings), not as parsed
        length = struct.unpack("<Q", fh.read(8))[0]
        metadata = dict(json.loads(fh.read(length).decode("utf-8")).get("__metadata__") or {})
    metadata["dtype"] = dtype
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return Path(target)
