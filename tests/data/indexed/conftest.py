import os

import pytest

from tests.data.indexed.tiny_corpus import make_documents, train_tokenizer, write_shards


@pytest.fixture(scope="session")
def tiny_docs():
    return make_documents(48, seed=3)


@pytest.fixture(scope="session")
def tiny_tokenizer_path(tmp_path_factory, tiny_docs):
    return train_tokenizer(tiny_docs, str(tmp_path_factory.mktemp("tok") / "tiny.model"))


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_path):
    from megatron_inserter.data.tokenizers import build_tokenizer

    return build_tokenizer("sentencepiece", tiny_tokenizer_path)


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory, tiny_docs):
    out = tmp_path_factory.mktemp("shards")
    write_shards(tiny_docs, str(out), docs_per_shard=8)
    return str(out)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, tiny_shards, tiny_tokenizer_path):
    """``inserter preprocess`` of the tiny shards: returns the output prefix."""
    from megatron_inserter.data.indexed.preprocess_cli import main

    prefix = str(tmp_path_factory.mktemp("indexed") / "tiny")
    rc = main(["--input", tiny_shards, "--output-prefix", prefix, "--tokenizer-type", "sentencepiece",
               "--tokenizer-model", tiny_tokenizer_path, "--no-progress"])
    assert rc == 0
    return prefix


@pytest.fixture(scope="module")
def gloo_group():
    """BlendedDataset needs a process group: a gloo group of size 1."""
    import torch.distributed as dist

    from tests.harness import free_port

    created = False
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
        created = True
    yield
    if created:
        dist.destroy_process_group()


@pytest.fixture
def cache_dir(tmp_path):
    path = tmp_path / "cache"
    os.makedirs(path)
    return str(path)
