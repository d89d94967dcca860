"""Training checkpoints: ``RUN/checkpoints/last.pt`` (everything a run needs to go on exactly) and
``best.pt`` (the best network so far), written atomically and read with ``torch.load(weights_only=True)``.

A checkpoint holds tensors and plain data only: the network, optimizer, schedule, grad-scaler and loss
states, the step and the sampler's position, every random generator's state (Python, NumPy, torch, CUDA;
one set per process), the best metric so far, the configuration and the split. Anything else in the file
(a pickled object, which could run code when unpickled) is refused.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lungtk.core import LungtkError, atomic_path

FORMAT = "lungtk-train-checkpoint"
VERSION = 1


def rng_state() -> dict[str, Any]:
    """Every generator this process draws from, as tensors and plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() and torch.cuda.is_initialized()
        else [],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write ``state`` (plus the format marker) atomically: a crash leaves the previous file intact."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **state}, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A lungtk checkpoint's contents; one clear error for a missing, corrupt, foreign or unsafe file."""
    path = Path(path)
    if not path.is_file():
        raise LungtkError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only" in str(exc).lower() or "weights_only" in str(exc).lower():
            raise LungtkError(
                f"{path}: refused: it holds pickled Python objects, not only tensors and plain data, and "
                "unpickling them could run code; lungtk loads only its own checkpoints"
            ) from None
        raise LungtkError(f"{path}: not a readable checkpoint (corrupt or truncated: {exc})") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LungtkError(f"{path}: not a readable checkpoint (corrupt or truncated: {first})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        what = (
            f"a dict with keys {sorted(map(str, state))[:5]}"
            if isinstance(state, dict)
            else type(state).__name__
        )
        raise LungtkError(f"{path}: not a lungtk training checkpoint (it holds {what})")
    if state.get("version") != VERSION:
        raise LungtkError(
            f"{path}: checkpoint format version {state.get('version')}; this lungtk-train reads version {VERSION}"
        )
    return state
