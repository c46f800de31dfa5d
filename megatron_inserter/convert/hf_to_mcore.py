"""Hugging Face -> megatron-inserter: LLMs, Qwen2-Audio, and an LLM + Whisper encoder composition.

Every path reads the source lazily, checks it completely (architecture, every tensor present with the
shape its config implies, no tensor left unmapped) and only then writes the checkpoint (see ``layout``).
"""

from __future__ import annotations

import os

import torch

from megatron_inserter.convert import hf_audio, hf_llm, mcore_checkpoint
from megatron_inserter.convert.builders import inserter_builder, llm_builder
from megatron_inserter.convert.errors import ConversionError
from megatron_inserter.convert.hf_io import HFCheckpoint, read_json
from megatron_inserter.models import config_file
from megatron_inserter.models.config import (
    AdapterConfig,
    InserterModelConfig,
    LLMConfig,
    default_encoder_layers,
)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
DEFAULT_AUDIO_TOKEN = 151646  # Qwen2-Audio's <|AUDIO|>


def _dtype(name: str, ckpt: HFCheckpoint) -> torch.dtype:
    return ckpt.dtype() if name == "auto" else DTYPES[name]


def check_tensor_parallel(cfg: LLMConfig, tp: int) -> None:
    if tp < 1:
        raise ConversionError(f"--target-tensor-parallel-size must be >= 1, got {tp}")
    for field, value in (("num_attention_heads", cfg.num_attention_heads), ("num_key_value_heads", cfg.num_query_groups)):
        if value % tp:
            raise ConversionError(f"--target-tensor-parallel-size {tp} does not divide the language model's "
                                  f"{field}={value}")


def reject_unused(ckpt: HFCheckpoint) -> None:
    unused = ckpt.unused()
    if unused:
        more = f" and {len(unused) - 5} more" if len(unused) > 5 else ""
        raise ConversionError(f"{ckpt.directory} holds tensors this converter does not map: "
                              f"{', '.join(unused[:5])}{more} (does config.json describe these weights?)")


def detect(config: dict, where: str) -> str:
    kind = config.get("model_type")
    if kind in hf_llm.SUPPORTED:
        return "llm"
    if kind in ("qwen2_audio", "whisper"):
        return kind
    archs = ", ".join(config.get("architectures") or []) or "none listed"
    raise ConversionError(f"{where}: unsupported architecture model_type={kind!r} ({archs}); supported: "
                          "qwen2 / llama language models, qwen2_audio, and whisper encoders (with --llm)")


def convert_llm(hf_dir: str, output: str, tp: int = 1, dtype: str = "auto") -> str:
    """A Qwen2 / Llama directory -> a ``--model-type gpt`` checkpoint."""
    ckpt = HFCheckpoint(hf_dir)
    where = f"{hf_dir}/config.json"
    cfg = hf_llm.llm_config_from_hf(ckpt.config, where)
    check_tensor_parallel(cfg, tp)
    names = hf_llm.TextModelNames()
    hf_llm.check_llm_tensors(ckpt, cfg, names, where)
    padded = cfg.padded_vocab_size(tp)
    sources = dict(hf_llm.llm_to_mcore(ckpt, cfg, names, padded))
    reject_unused(ckpt)
    meta = config_file.to_dict(cfg, padded, {"llm": ckpt.config})
    return mcore_checkpoint.write(output, llm_builder(cfg, tp), sources, meta, _dtype(dtype, ckpt), [hf_dir])


def _inserter_padding(cfg: InserterModelConfig, tp: int) -> int:
    check_tensor_parallel(cfg.llm, tp)
    if cfg.encoder.num_attention_heads % tp:
        raise ConversionError(f"--target-tensor-parallel-size {tp} does not divide the speech encoder's "
                              f"encoder_attention_heads={cfg.encoder.num_attention_heads}")
    padded = cfg.llm.padded_vocab_size(1)
    if cfg.llm.padded_vocab_size(tp) != padded:
        raise ConversionError(f"--target-tensor-parallel-size {tp} pads the vocabulary to "
                              f"{cfg.llm.padded_vocab_size(tp)} rows instead of {padded}; use a power of two")
    return padded


def convert_qwen2_audio(hf_dir: str, output: str, tp: int = 1, dtype: str = "auto") -> str:
    """A Qwen2AudioForConditionalGeneration directory -> an InSerter checkpoint in ``packed`` input mode: each clip
    costs the encoder its own frames, which equal Qwen2-Audio's on the padded 30 s window with its mask."""
    ckpt = HFCheckpoint(hf_dir)
    where = f"{hf_dir}/config.json"
    whole = ckpt.config
    text = {"model_type": "qwen2", **(whole.get("text_config") or {})}
    audio = {"model_type": "qwen2_audio_encoder", **(whole.get("audio_config") or {})}
    llm = hf_llm.llm_config_from_hf(text, f"{where} text_config")
    encoder = hf_audio.encoder_config_from_hf(audio, f"{where} audio_config", input_mode="packed",
                                              window_key_padding_mask=True)
    token = whole.get("audio_token_index", whole.get("audio_token_id", DEFAULT_AUDIO_TOKEN))
    cfg = InserterModelConfig(name=os.path.basename(os.path.normpath(hf_dir)), encoder=encoder,
                              adapter=hf_audio.adapter_config_for_qwen2_audio(), llm=llm,
                              audio_placeholder_id=int(token))
    padded = _inserter_padding(cfg, tp)
    if "model.language_model.embed_tokens.weight" in ckpt:  # transformers 5 layout
        names, tower, projector = (hf_llm.TextModelNames("model.language_model.", "lm_head.weight"),
                                   "model.audio_tower.", "model." + hf_audio.PROJECTOR)
    else:  # the layout of the published checkpoints
        names, tower, projector = (hf_llm.TextModelNames("language_model.model.", "language_model.lm_head.weight"),
                                   "audio_tower.", hf_audio.PROJECTOR)
    hf_llm.check_llm_tensors(ckpt, llm, names, f"{where} text_config")
    hf_audio.check_encoder_tensors(ckpt, encoder, tower, f"{where} audio_config")
    sources = dict(hf_audio.encoder_to_mcore(ckpt, encoder, tower))
    sources.update(hf_audio.projector_to_mcore(ckpt, projector, encoder.hidden_size, llm.hidden_size, where))
    sources.update(hf_llm.llm_to_mcore(ckpt, llm, names, padded, prefix="language_model."))
    reject_unused(ckpt)
    meta = config_file.to_dict(cfg, padded, {"qwen2_audio": whole})
    return mcore_checkpoint.write(output, inserter_builder(cfg), sources, meta, _dtype(dtype, ckpt), [hf_dir])


def _placeholder_id(llm_dir: str, rows: int, given: int | None) -> int:
    """The ``<|AUDIO|>`` id the LLM's tokenizer gives (adding the audio tokens as training does)."""
    if given is not None:
        token = given
    elif os.path.isfile(os.path.join(llm_dir, "tokenizer.json")):
        from megatron_inserter.data.tokenizers import HuggingFaceTokenizer

        tok = HuggingFaceTokenizer(llm_dir)
        if tok.vocab_size > rows:
            raise ConversionError(f"{llm_dir}: the tokenizer with the audio tokens has {tok.vocab_size} entries but "
                                  f"the embedding has {rows} rows")
        token = tok.audio_placeholder_id
    else:
        raise ConversionError(f"{llm_dir} has no tokenizer.json to find the <|AUDIO|> id in; pass "
                              "--audio-placeholder-id")
    if not 0 <= token < rows:
        raise ConversionError(f"--audio-placeholder-id {token} is outside the vocabulary of {rows} rows")
    return token


def composed_adapter(kind: str, encoder_layers: int) -> AdapterConfig:
    """The fresh adapter of ``--adapter KIND``: Qwen2-Audio's pooling + linear, a frame-stacking MLP, or DeSTA2's
    Q-Former (64 queries per tapped layer, two blocks, taps ``default_encoder_layers``)."""
    if kind == "pool-linear":
        return hf_audio.adapter_config_for_qwen2_audio()
    if kind == "qformer":
        return AdapterConfig(kind="qformer", encoder_layers=default_encoder_layers(encoder_layers))
    return AdapterConfig(kind=kind)


def fresh_qformer(cfg: InserterModelConfig, seed: int) -> dict[str, torch.Tensor]:
    """A newly initialised Q-Former adapter as the model initialises one (queries N(0, 1), linears N(0, 0.02),
    zero biases, unit LayerNorms, uniform layer weights), reproducible from ``seed``; TP=1 names."""
    from megatron_inserter.convert.mcore_io import single_process_parallel
    from megatron_inserter.models.builder import encoder_transformer_config, llm_transformer_config
    from megatron_inserter.models.qformer import QFormerAdapter

    with single_process_parallel(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = encoder_transformer_config(cfg, llm_transformer_config(cfg, use_cpu_initialization=True))
        adapter = QFormerAdapter(cfg.adapter, config, cfg.encoder.hidden_size, cfg.llm.hidden_size,
                                 cfg.adapter.tapped_layers(cfg.encoder.num_layers))
    return {f"adapter.{k}": v.detach() for k, v in adapter.state_dict().items() if not k.endswith("_extra_state")}


def compose(llm_dir: str, encoder_dir: str, output: str, tp: int = 1, dtype: str = "auto", seed: int = 1234,
            audio_placeholder_id: int | None = None, encoder_input_mode: str = "masked",
            adapter: str = "pool-linear") -> str:
    """An LLM directory + a Whisper directory -> one InSerter checkpoint with a freshly initialised adapter
    (``adapter``: its kind, see ``composed_adapter``)."""
    llm_ckpt, enc_ckpt = HFCheckpoint(llm_dir), HFCheckpoint(encoder_dir)
    llm_where, enc_where = f"{llm_dir}/config.json", f"{encoder_dir}/config.json"
    if detect(llm_ckpt.config, llm_where) != "llm":
        raise ConversionError(f"--llm {llm_dir} is a {llm_ckpt.config.get('model_type')} model, not a language model")
    if enc_ckpt.config.get("model_type") != "whisper":
        raise ConversionError(f"--encoder {encoder_dir}: model_type {enc_ckpt.config.get('model_type')!r} is not "
                              "a Whisper model")
    llm = hf_llm.llm_config_from_hf(llm_ckpt.config, llm_where)
    encoder = hf_audio.encoder_config_from_hf(enc_ckpt.config, enc_where, input_mode=encoder_input_mode,
                                              window_key_padding_mask=False)
    token = _placeholder_id(llm_dir, llm.vocab_size, audio_placeholder_id)
    cfg = InserterModelConfig(name=f"{os.path.basename(os.path.normpath(llm_dir))}+"
                                   f"{os.path.basename(os.path.normpath(encoder_dir))}",
                              encoder=encoder, adapter=composed_adapter(adapter, encoder.num_layers), llm=llm,
                              audio_placeholder_id=token)
    padded = _inserter_padding(cfg, tp)
    names = hf_llm.TextModelNames()
    hf_llm.check_llm_tensors(llm_ckpt, llm, names, llm_where)
    tower = hf_audio.encoder_prefix(enc_ckpt, ("model.encoder.", "encoder."))
    hf_audio.check_encoder_tensors(enc_ckpt, encoder, tower, enc_where)
    for key in enc_ckpt.names():  # the Whisper decoder and output projection are not used
        if not key.startswith(tower):
            enc_ckpt.mark_ignored(key)
    sources = dict(hf_audio.encoder_to_mcore(enc_ckpt, encoder, tower))
    if cfg.adapter.kind == "qformer":
        sources.update(fresh_qformer(cfg, seed))
    else:
        sources.update(hf_audio.fresh_adapter(cfg.adapter, encoder.hidden_size, llm.hidden_size, seed))
    sources.update(hf_llm.llm_to_mcore(llm_ckpt, llm, names, padded, prefix="language_model."))
    reject_unused(llm_ckpt)
    reject_unused(enc_ckpt)
    meta = config_file.to_dict(cfg, padded, {"llm": llm_ckpt.config, "encoder": enc_ckpt.config})
    return mcore_checkpoint.write(output, inserter_builder(cfg), sources, meta, _dtype(dtype, llm_ckpt), [llm_dir])


def convert(hf_dir: str, output: str, tp: int = 1, dtype: str = "auto") -> str:
    """One Hugging Face directory: a Qwen2 / Llama LLM or a whole Qwen2-Audio."""
    where = f"{hf_dir}/config.json"
    kind = detect(read_json(where), where)
    if kind == "llm":
        return convert_llm(hf_dir, output, tp, dtype)
    if kind == "qwen2_audio":
        return convert_qwen2_audio(hf_dir, output, tp, dtype)
    raise ConversionError(f"{hf_dir} is a Whisper model: it holds only a speech encoder; combine it with a "
                          "language model: --llm LLM_DIR --encoder WHISPER_DIR")
