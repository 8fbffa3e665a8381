"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint is a nested structure of dicts, lists, scalars, strings, ``None`` and torch tensors
(model, optimizer, scheduler and strategy states, the NumPy generator's ``bit_generator.state``,
the history). :func:`save` splits it into a flat ``{path: tensor}`` dict written with
safetensors and a JSON skeleton in which each tensor is replaced by ``{"__tensor__": path}``;
:func:`load` puts it back together. Dict keys are kept with their type (int keys of optimizer
states stay ints).

Files in ``folder``: ``checkpoint.json`` (the skeleton, naming its tensor file) and
``tensors-<step>.safetensors``. The JSON is replaced atomically after its tensor file is
complete, so a run killed while writing leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from debiasrec.errors import DataError

CHECKPOINT_FILE = "checkpoint.json"
FORMAT_VERSION = 1


def _split(obj: Any, path: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu()
        if t.is_sparse:
            t = t.to_dense()
        tensors[path] = t.contiguous().clone()
        return {"__tensor__": path}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"checkpoint dict keys must be str or int, got {type(k)} at {path}")
            items.append([k, _split(v, f"{path}/{k}", tensors)])
        return {"__dict__": items}
    if isinstance(obj, (list, tuple)):
        out = [_split(v, f"{path}/{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": out} if isinstance(obj, tuple) else out
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if hasattr(obj, "item") and callable(obj.item):  # NumPy scalars
        return obj.item()
    raise TypeError(f"cannot checkpoint a {type(obj).__name__} at {path}")


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _join(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_join(v, tensors) for v in obj["__tuple__"])
        return {k: _join(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def save(folder: str | Path, state: dict[str, Any], step: int) -> Path:
    """Write ``state`` into ``folder`` (created if needed); returns the JSON file's path."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, "", tensors)
    tfile = f"tensors-{step}.safetensors"
    tmp = folder / (tfile + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / tfile)
    meta = {"format": FORMAT_VERSION, "tensors": tfile, "state": skeleton}
    jtmp = folder / (CHECKPOINT_FILE + ".tmp")
    jtmp.write_text(json.dumps(meta))
    os.replace(jtmp, folder / CHECKPOINT_FILE)
    for old in folder.glob("tensors-*.safetensors"):
        if old.name != tfile:
            old.unlink(missing_ok=True)
    return folder / CHECKPOINT_FILE


def exists(folder: str | Path) -> bool:
    """Whether ``folder`` holds a checkpoint."""
    return (Path(folder) / CHECKPOINT_FILE).is_file()


def load(folder: str | Path) -> dict[str, Any]:
    """Inverse of :func:`save`.

    Raises:
        DataError: no checkpoint, or one written by an incompatible version.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        raise DataError(f"no training checkpoint in {folder} (expected {CHECKPOINT_FILE})")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise DataError(
            f"checkpoint {path} has format {meta.get('format')!r}; this version reads "
            f"{FORMAT_VERSION}"
        )
    tensors = load_file(str(folder / meta["tensors"]))
    return _join(meta["state"], tensors)
