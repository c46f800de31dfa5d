"""What a converted checkpoint directory holds, and how it is published.

    OUT/latest_checkpointed_iteration.txt   "0"
    OUT/iter_0000000/                      megatron-core dist checkpoint: {"model": sharded state} + common
                                           part (train_state at iteration 0, args, format_version), the
                                           layout ``inserter train --load OUT --finetune`` reads
    OUT/model_config.json                  the model it holds (``models/config_file.py``: model_type, llm /
                                           encoder / adapter configs, padded vocabulary, the source configs)
    OUT/hf_assets/                         tokenizer / processor files copied from the source directories

Every output (dist checkpoint or Hugging Face directory) is built in a hidden sibling directory and renamed
into place at the end; on any error the sibling is removed and nothing appears at the output path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager

from megatron_inserter.convert.errors import ConversionError

ASSETS = "hf_assets"
CONVERTED_ITERATION = 0
# Small files a Hugging Face model directory carries besides its weights and config.
_ASSET_SUFFIXES = (".json", ".txt", ".model", ".tiktoken", ".jinja")
_NOT_ASSETS = {"config.json", "model.safetensors.index.json"}
_MAX_ASSET_BYTES = 64 * 1024**2


@contextmanager
def staged_directory(output: str):
    """Yield a fresh hidden sibling of ``output``; rename it to ``output`` when the block succeeds."""
    output = os.path.abspath(output)
    if os.path.exists(output) and (not os.path.isdir(output) or os.listdir(output)):
        raise ConversionError(f"--output {output} already exists and is not empty; remove it or choose another path")
    parent = os.path.dirname(output)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(output)}.partial-", dir=parent)
    try:
        yield tmp
        _make_readable(tmp)
        if os.path.isdir(output):
            os.rmdir(output)  # empty (checked above)
        os.rename(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _make_readable(root: str) -> None:
    """mkdtemp creates 0700 and some writers 0600: give the published tree the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    for dirpath, _, filenames in os.walk(root):
        os.chmod(dirpath, 0o777 & ~umask)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o666 & ~umask)


def copy_assets(src_dir: str, dst_dir: str) -> list[str]:
    """Copy tokenizer / processor / generation files (never weights or config.json); returns their names."""
    copied = []
    for name in sorted(os.listdir(src_dir)):
        path = os.path.join(src_dir, name)
        if (name in _NOT_ASSETS or not name.endswith(_ASSET_SUFFIXES) or not os.path.isfile(path)
                or os.path.getsize(path) > _MAX_ASSET_BYTES):
            continue
        os.makedirs(dst_dir, exist_ok=True)
        shutil.copyfile(path, os.path.join(dst_dir, name))
        copied.append(name)
    return copied
