import math
import os
import re

from megatron.core.datasets.indexed_dataset import IndexedDataset

from megatron_inserter.data.indexed.metadata import MODE_TEXT
from megatron_inserter.data.indexed.preprocess_cli import main as preprocess
from tests.data.conversation.helpers import write_rows
from tests.data.conversation.sft_run import sft_losses
from tests.harness import run_distributed

RECIPE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "sft_inserter_tiny.yaml")
REPLY = re.compile(r"Reply (\d+) of (\d+): it is sunny and warm\.<\|im_end\|>")


def _stored_targets(prefix):
    ds = IndexedDataset(prefix, multimodal=True)
    modes, lengths = ds.index.sequence_modes, ds.sequence_lengths
    return [int(lengths[a:b][modes[a:b] == MODE_TEXT].sum())
            for a, b in zip(ds.document_indices[:-1], ds.document_indices[1:])]


def test_the_sft_recipe_trains_on_exactly_the_stored_assistant_tokens(conversation_dataset, tok, tok_dir, tmp_path):
    text = write_rows(tmp_path / "text.jsonl", [{"text": f"Plain text document {i}. " * 8} for i in range(60)])
    assert preprocess(["--input", text, "--output-prefix", str(tmp_path / "text"), "--tokenizer-type", "huggingface",
                       "--tokenizer-model", tok_dir, "--no-progress"]) == 0
    argv = ["--config", RECIPE, "--tokenizer-type", "huggingface", "--tokenizer-model", tok_dir,
            "--data-path", "0.5", conversation_dataset, "0.5", str(tmp_path / "text"), "--no-finetune",
            "--train-iters", "3", "--eval-iters", "0", "--log-interval", "1", "--data-cache-path", str(tmp_path / "c")]
    out = run_distributed(sft_losses, 1, argv, timeout=600)[0]
    assert len(out["history"]) == 3 and all(math.isfinite(h["lm loss"]) for h in out["history"])
    batches, counts = out["batches"], out["counts"]
    assert len(batches) == len(counts) == 3  # one micro-batch of 4 per step (the recipe's batch sizes)
    # the loss is taken over exactly the stored mask of the samples read
    assert counts == [int(sum(map(sum, b["loss_mask"]))) for b in batches]
    stored = _stored_targets(conversation_dataset)
    rows = {0: 0, 1: 0}
    for b in batches:
        for labels, mask, component, padding in zip(b["labels"], b["loss_mask"], b["dataset_id"], b["num_padding"]):
            rows[component] += 1
            masked = [t for t, m in zip(labels, mask) if m]
            if component == 0:  # conversations: whole assistant replies and nothing else
                targets = tok.detokenize(masked)
                assert REPLY.sub("", targets) == ""
                present = {int(c) for _, c in REPLY.findall(targets)}
                assert present and len(masked) == sum(stored[c] for c in present)
            else:  # text: every real target
                assert len(masked) == len(labels) - padding
    assert rows[0] >= 3 and rows[1] >= 3  # both halves of the blend were read
