"""Hugging Face checkpoint directories: read tensors lazily, write (sharded) safetensors.

Only safetensors are read and written, never pickled weights. Reading memory-maps each file: a tensor's
pages are loaded when it is used and can be evicted afterwards, so converting a 7B model does not hold
the whole model in RAM.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import torch

from megatron_inserter.convert.errors import ConversionError
from megatron_inserter.files import write_json_atomic

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_BYTES = 5 * 1024**3


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ConversionError(f"{path} not found") from None
    except json.JSONDecodeError as e:
        raise ConversionError(f"{path} is not valid JSON: {e}") from None


class HFCheckpoint:
    """The tensors of a local Hugging Face model directory (config.json + safetensors).

    Every tensor handed out by ``get`` is recorded; ``unused()`` lists the ones nobody asked for, so a
    converter can refuse checkpoints holding tensors it does not understand.
    """

    def __init__(self, directory: str):
        from safetensors import safe_open

        self.directory = directory
        if not os.path.isdir(directory):
            raise ConversionError(f"{directory} is not a directory (expected a Hugging Face model directory; "
                                  "hub names are not downloaded: pass a local path)")
        self.config = read_json(os.path.join(directory, "config.json"))
        index_path = os.path.join(directory, INDEX_FILE)
        if os.path.exists(index_path):
            weight_map = read_json(index_path).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ConversionError(f"{index_path} has no weight_map")
        elif os.path.exists(os.path.join(directory, SINGLE_FILE)):
            weight_map = None
        else:
            found = sorted(f for f in os.listdir(directory) if f.endswith((".bin", ".pt", ".pth", ".ckpt")))
            hint = (f" (found {', '.join(found)}: pickled weights are not read; re-save the model with "
                    "save_pretrained(..., safe_serialization=True))") if found else ""
            raise ConversionError(f"{directory} holds neither {SINGLE_FILE} nor {INDEX_FILE}{hint}")

        self._handles = {}
        self._location: dict[str, str] = {}
        files = sorted(set(weight_map.values())) if weight_map else [SINGLE_FILE]
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.exists(path):
                raise ConversionError(f"{path} is listed in {INDEX_FILE} but does not exist")
            try:
                handle = safe_open(path, framework="pt")
            except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
                raise ConversionError(f"{path} is not a readable safetensors file: {e}") from None
            self._handles[name] = handle
            for key in handle.keys():  # noqa: SIM118 - a safetensors handle, not a dict
                if key in self._location:
                    raise ConversionError(f"tensor {key} is stored twice ({self._location[key]} and {name})")
                self._location[key] = name
        if weight_map:
            for key, name in weight_map.items():
                if self._location.get(key) != name:
                    raise ConversionError(f"{INDEX_FILE} puts tensor {key} in {name}, but that file does not hold it")
        self._used: set[str] = set()

    def names(self) -> list[str]:
        return sorted(self._location)

    def __contains__(self, name: str) -> bool:
        return name in self._location

    def shape(self, name: str) -> tuple[int, ...]:
        self._require(name)
        return tuple(self._handles[self._location[name]].get_slice(name).get_shape())

    def get(self, name: str) -> torch.Tensor:
        self._require(name)
        self._used.add(name)
        return self._handles[self._location[name]].get_tensor(name)

    def mark_ignored(self, name: str) -> None:
        """Record a tensor as deliberately not converted (e.g. the Whisper decoder)."""
        self._used.add(name)

    def unused(self) -> list[str]:
        return sorted(set(self._location) - self._used)

    def dtype(self) -> torch.dtype:
        """The dtype of the floating-point weights (the most common one)."""
        counts: dict[torch.dtype, int] = {}
        for key in self._location:
            t = self._handles[self._location[key]].get_slice(key).get_dtype()
            counts[_DTYPES.get(t, torch.float32)] = counts.get(_DTYPES.get(t, torch.float32), 0) + 1
        return max(counts, key=counts.get) if counts else torch.float32

    def _require(self, name: str) -> None:
        if name not in self._location:
            raise ConversionError(f"tensor {name} is missing from {self.directory}")


_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def write_safetensors(directory: str, tensors: Iterable[tuple[str, torch.Tensor]],
                      max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> list[str]:
    """Write ``tensors`` (streamed, one shard in memory at a time) as Hugging Face safetensors.

    One file ``model.safetensors`` when everything fits in one shard, else ``model-0000i-of-0000n`` files
    plus ``model.safetensors.index.json``. ``directory`` is a fresh staging directory (the caller renames
    it into place), so the shard files are renamed once their count is known. Returns the file names.
    """
    from safetensors.torch import save_file

    staged: list[tuple[str, list[str]]] = []
    total = 0
    shard: dict[str, torch.Tensor] = {}
    shard_bytes = 0

    def flush():
        nonlocal shard, shard_bytes
        if not shard:
            return
        name = f"shard-{len(staged):05d}.safetensors"
        save_file(shard, os.path.join(directory, name), metadata={"format": "pt"})
        staged.append((name, list(shard)))
        shard, shard_bytes = {}, 0

    seen: set[str] = set()
    for name, tensor in tensors:
        if name in seen:
            raise ValueError(f"tensor {name} written twice")
        seen.add(name)
        nbytes = tensor.numel() * tensor.element_size()
        if shard and shard_bytes + nbytes > max_shard_bytes:
            flush()
        shard[name] = tensor.detach().contiguous()
        shard_bytes += nbytes
        total += nbytes
    flush()

    if len(staged) <= 1:
        if staged:
            os.rename(os.path.join(directory, staged[0][0]), os.path.join(directory, SINGLE_FILE))
        return [SINGLE_FILE] if staged else []
    n = len(staged)
    weight_map, files = {}, []
    for i, (tmp, names) in enumerate(staged):
        final = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        os.rename(os.path.join(directory, tmp), os.path.join(directory, final))
        files.append(final)
        weight_map.update({k: final for k in names})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    write_json_atomic(os.path.join(directory, INDEX_FILE), index)
    return files + [INDEX_FILE]
