"""On CUDA: the model trains in bf16, masked-mode encoding stays padding-invariant, and with Transformer
Engine the TE specs are used and FP8 reaches the LLM decoder only."""

import math
import os

import pytest
import torch

from tests.models import inserter_parallel as ip

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_process_group():
    from tests.harness import free_port

    saved = dict(os.environ)
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(free_port()))
    from megatron_inserter.runtime import ParallelConfig, destroy_parallel, initialize_parallel

    initialize_parallel(ParallelConfig(seed=3))
    yield
    destroy_parallel()
    os.environ.clear()
    os.environ.update(saved)


def _needs_te():
    from megatron_inserter.models.specs import use_transformer_engine

    if not use_transformer_engine():
        pytest.skip("needs Transformer Engine")


def _train_once(model, batch):
    batch = {k: v.cuda() for k, v in batch.items()}
    loss = model(batch["tokens"], batch["position_ids"], None, labels=batch["labels"], audio=batch["audio"],
                 audio_lengths=batch["audio_lengths"])
    mean = (loss.float() * batch["loss_mask"]).sum() / batch["loss_mask"].sum()
    mean.backward()
    return float(mean)


def _bf16_model(**overrides):
    from megatron_inserter.models.builder import build_model_chunks

    [model] = build_model_chunks(ip.small_config(), params_dtype=torch.bfloat16, bf16=True,
                                 pipeline_dtype=torch.bfloat16, **overrides)
    return model.cuda()


def test_bf16_training_step_on_cuda(cuda_process_group):
    model = _bf16_model()
    batch = ip.collate(ip.global_batches(1)[0][:ip.MBS])
    loss = _train_once(model, batch)
    assert math.isfinite(loss)
    assert model.encoder.conv1.weight.dtype == torch.bfloat16
    assert model.encoder.conv1.weight.grad is not None


def test_masked_encoding_is_padding_invariant_on_cuda(cuda_process_group):
    model = _bf16_model().eval()
    lengths = [16000 * 2 + 5, 9000, 3000]
    audio = torch.randn(len(lengths), max(lengths), device="cuda") * 0.1
    lens = torch.tensor(lengths, device="cuda")
    with torch.no_grad():
        batched = model.encode_audio(audio, lens)
        spec = model.cfg.frame_spec()
        from megatron_inserter.data.frames import num_audio_frames

        start = 0
        for i, n in enumerate(lengths):
            alone = model.encode_audio(audio[i:i + 1, :n], lens[i:i + 1])
            k = num_audio_frames(n, spec)
            torch.testing.assert_close(alone.float(), batched[start:start + k].float(), rtol=2e-2, atol=2e-2)
            start += k


def test_transformer_engine_specs_are_used(cuda_process_group):
    _needs_te()
    from megatron.core.extensions.transformer_engine import TELayerNormColumnParallelLinear

    model = _bf16_model()
    assert isinstance(model.encoder.transformer.layers[0].self_attention.linear_qkv,
                      TELayerNormColumnParallelLinear)
    assert isinstance(model.language_model.decoder.layers[0].self_attention.linear_qkv,
                      TELayerNormColumnParallelLinear)


def test_fp8_is_confined_to_the_llm_decoder(cuda_process_group):
    _needs_te()
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("FP8 needs compute capability 8.9 or newer")
    model = _bf16_model(fp8="hybrid", fp8_recipe="delayed")
    assert model.config.fp8 == "hybrid"
    assert model.encoder.config.fp8 is None and model.adapter.config.fp8 is None
    batch = ip.collate(ip.global_batches(1)[0][:ip.MBS])
    assert math.isfinite(_train_once(model, batch))
