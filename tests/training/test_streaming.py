"""Micro-batches stream: the batch tensors alive at once do not grow with the number of micro-batches, in
training steps and in validation, with and without pipeline parallelism, and the streamed run computes
exactly what it computes with fewer, larger steps of the same samples."""

from tests.harness import run_distributed
from tests.training.runs import _teardown, common_flags

MODEL = {"model_type": "inserter", "seq_length": 64, "micro_batch_size": 1, "train_iters": 1, "eval_iters": 1,
         "eval_interval": 1, "split": "80,20,0", "num_workers": 0, "lr_warmup_iters": 0}


def _live_batches(rank, world_size, argvs) -> list[dict]:
    """Train once per argv, counting the micro-batches whose tensors are still referenced anywhere (the
    iterator, the schedule, autograd) at every moment: a micro-batch counts from the moment the data path
    hands it out until the last of its tensors is freed."""
    import weakref

    from megatron_inserter.training import data
    from megatron_inserter.training.arguments import parse_args
    from megatron_inserter.training.trainer import train

    out = []
    real_load = data.BatchSource.load
    for argv in argvs:
        live = {"batches": 0, "bytes": 0, "peak_batches": 0, "peak_bytes": 0, "largest": 0, "loaded": 0}

        def load(self, live=live):
            batch = real_load(self)
            if batch is None:
                return None
            tensors = list(batch.values())
            size = sum(t.numel() * t.element_size() for t in tensors)
            left = [len(tensors)]

            def release():
                left[0] -= 1
                if left[0] == 0:
                    live["batches"] -= 1
                    live["bytes"] -= size

            for t in tensors:
                weakref.finalize(t, release)
            live["batches"] += 1
            live["bytes"] += size
            live["loaded"] += 1
            live["largest"] = max(live["largest"], size)
            live["peak_batches"] = max(live["peak_batches"], live["batches"])
            live["peak_bytes"] = max(live["peak_bytes"], live["bytes"])
            return batch

        data.BatchSource.load = load
        try:
            result = train(parse_args(argv))
        finally:
            data.BatchSource.load = real_load
            _teardown()
        out.append({**{k: v for k, v in live.items() if k != "batches"}, "history": result.history,
                    "validation": result.validation})
    return out


def test_batch_memory_does_not_grow_with_the_number_of_microbatches(tmp_path, corpus):
    tok, prefix = corpus
    few, many = (common_flags(tok, prefix, global_batch_size=n, **MODEL) for n in (2, 16))
    small, large = run_distributed(_live_batches, 1, [few, many])[0]
    # One step and one validation run: 2 x 2 and 2 x 16 micro-batches went through the data path ...
    assert (small["loaded"], large["loaded"]) == (4, 32)
    # ... one at a time: the next is read after the previous one's tensors are gone.
    assert small["peak_batches"] == large["peak_batches"] == 1
    assert large["peak_bytes"] <= large["largest"]
    assert small["history"][0]["consumed_samples"] == 2 and large["history"][0]["consumed_samples"] == 16


def test_pipeline_stages_hold_at_most_the_pipeline_depth(tmp_path, corpus):
    tok, prefix = corpus
    text_model = {**MODEL, "model_type": "gpt"}  # the schedule's behaviour does not depend on the model
    argv = common_flags(tok, prefix, global_batch_size=16, pipeline_model_parallel_size=2, **text_model)
    per_rank = [runs[0] for runs in run_distributed(_live_batches, 2, [argv])]
    for rank, run in enumerate(per_rank):
        assert run["loaded"] == 32, rank  # 16 micro-batches in the step, 16 in the validation run
        # 1F1B keeps at most the pipeline depth in flight on the first stage, one on the last; reading the
        # whole step up front would hold all 16.
        assert 1 <= run["peak_batches"] <= 2 - rank, rank
    assert per_rank[0]["validation"] == per_rank[1]["validation"]  # every stage logs the same losses
