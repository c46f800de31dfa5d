import numpy as np

from tests.harness import run_distributed


def _build(rank, world_size, prefix, tokenizer_path, cache):
    import torch.distributed as dist

    from megatron_inserter.data.indexed import build_datasets, dataset_config
    from megatron_inserter.data.tokenizers import build_tokenizer

    dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world_size)
    tok = build_tokenizer("sentencepiece", tokenizer_path)
    cfg = dataset_config(["0.5", prefix, "0.5", prefix + "_asr"], "1,0,0", seq_length=64, seed=9, tokenizer=tok,
                         path_to_cache=cache)
    train = build_datasets(cfg, num_samples=(48, 0, 0))[0]
    loaded = [isinstance(d.sample_index, np.memmap) for d in train.datasets]
    return loaded, [train[i]["tokens"].tolist() for i in range(48)]


def test_rank0_builds_the_indices_and_the_other_ranks_load_them(tiny_dataset, tiny_tokenizer_path, tmp_path):
    (loaded0, samples0), (loaded1, samples1) = run_distributed(
        _build, 2, tiny_dataset, tiny_tokenizer_path, str(tmp_path / "cache"), timeout=240)
    assert loaded0 == [False, False] and loaded1 == [True, True]
    assert samples0 == samples1
