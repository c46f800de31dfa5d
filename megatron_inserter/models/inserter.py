"""The InSerter speech-text model: speech encoder + adapter + megatron-core GPTModel, side by side.

    model(tokens, position_ids, attention_mask, labels=labels, audio=audio, audio_lengths=audio_lengths)
      -> per-token loss [b, s / cp] with labels (like GPTModel), logits otherwise

On the first pipeline stage (first virtual chunk of pipeline rank 0) the text embeddings come from the LLM's
embedding layer; the frames of every clip in the batch (encoder + adapter, clips concatenated in batch
order) are written into the ``<|AUDIO|>`` placeholder positions with ``masked_scatter`` (counts checked); the
result is sliced for the context-parallel rank, scattered to the sequence-parallel region and handed to
GPTModel as ``decoder_input``. Later stages only run their slice of the LLM (``set_input_tensor``); the last
stage computes the loss from ``labels`` (sliced for the CP rank here; slice the loss mask with
``context_parallel.slice_batch_for_cp``). The encoder and the adapter exist on the first stage only and run
without sequence or context parallelism, in the LLM's parameter dtype (never FP8).

A batch without speech still touches every trainable encoder/adapter parameter (``0 * sum``), so
data-parallel ranks that did see speech do not wait forever for those gradients.

``documents=`` (a ``documents.DocumentLayout``) keeps the packed documents of each sample apart: no attention
across them and positions restarting at each (Megatron's ``--reset-attention-mask``/``--reset-position-ids``).

Parameter names: ``encoder.*`` (see encoder.py), ``adapter.*`` (adapter.py, qformer.py), ``language_model.*``
(megatron-core GPTModel: ``language_model.embedding.word_embeddings.weight``,
``language_model.decoder.layers.{i}...``, ``language_model.decoder.final_layernorm.weight``,
``language_model.output_layer.weight``).
"""

from __future__ import annotations

import torch
from megatron.core import tensor_parallel
from megatron.core.transformer.enums import ModelType
from megatron.core.transformer.module import MegatronModule

from megatron_inserter.models import specs
from megatron_inserter.models.adapter import build_adapter
from megatron_inserter.models.config import InserterModelConfig
from megatron_inserter.models.context_parallel import check_context_parallel_supported, slice_for_cp
from megatron_inserter.models.documents import DocumentLayout, run_language_model
from megatron_inserter.models.encoder import SpeechEncoder
from megatron_inserter.models.llm import build_gpt


class InserterModel(MegatronModule):
    def __init__(self, cfg: InserterModelConfig, llm_config, encoder_config, pre_process: bool = True,
                 post_process: bool = True, vp_stage: int | None = None, use_te: bool | None = None):
        super().__init__(config=llm_config)
        if use_te is None:
            use_te = specs.use_transformer_engine()
        check_context_parallel_supported(llm_config.context_parallel_size, use_te)
        self.cfg = cfg
        self.pre_process = pre_process
        self.post_process = post_process
        self.vp_stage = vp_stage
        self.use_te = use_te
        # Documents kept apart (``documents.py``): THD packed sequences under Transformer Engine, a per-sample
        # mask otherwise. Setting it on CPU runs the flattened THD layout with an explicit mask.
        self.documents_as_thd = use_te
        self.model_type = ModelType.encoder_or_decoder  # one stack for the pipeline schedules
        self.add_encoder = pre_process
        self.share_embeddings_and_output_weights = cfg.llm.tie_embeddings
        self.encoder = None
        self.adapter = None
        if self.add_encoder:
            self.encoder = SpeechEncoder(cfg.encoder, encoder_config, specs.encoder_layer_spec(use_te),
                                         specs.final_norm_module(use_te), packed_thd=use_te)
            self.adapter = build_adapter(cfg.adapter, encoder_config, cfg.encoder.hidden_size, cfg.llm.hidden_size,
                                         cfg.encoder.num_layers)
        self.language_model = build_gpt(
            cfg.llm, llm_config, pre_process=pre_process, post_process=post_process, vp_stage=vp_stage,
            tensor_model_parallel_size=llm_config.tensor_model_parallel_size,
            layer_spec=specs.gpt_layer_spec(use_te), scatter_embedding_sequence_parallel=False)
        self.freeze(encoder=cfg.freeze_encoder, adapter=cfg.freeze_adapter, llm=cfg.freeze_llm)

    # -- pipeline / DDP plumbing -------------------------------------------------------------------------
    def set_input_tensor(self, input_tensor) -> None:
        self.language_model.set_input_tensor(input_tensor)

    def shared_embedding_or_output_weight(self):
        return self.language_model.shared_embedding_or_output_weight()

    def freeze(self, encoder: bool = False, adapter: bool = False, llm: bool = False) -> None:
        """Stop gradients (requires_grad=False) for the chosen parts; call before DDP wrapping."""
        for flag, module in ((encoder, self.encoder), (adapter, self.adapter), (llm, self.language_model)):
            if flag and module is not None:
                for param in module.parameters():
                    param.requires_grad = False

    # -- audio -------------------------------------------------------------------------------------------
    def encode_audio(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> torch.Tensor:
        """Clips [n, samples] -> their frames concatenated in clip order, [sum_i frames_i, llm hidden]."""
        if self.encoder is None:
            raise RuntimeError("encode_audio is only available on the first pipeline stage")
        device = self.encoder.conv1.weight.device
        audio, audio_lengths = audio.to(device), audio_lengths.to(device)
        if self.cfg.adapter.kind == "qformer":
            return self._encode_with_queries(audio, audio_lengths)
        pre_norm = self.adapter.downsample if self.cfg.adapter.pools_before_encoder_norm else None
        encoder_trains = any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and encoder_trains):
            h, lengths = self.encoder(audio, audio_lengths, before_final_norm=pre_norm)
        if pre_norm is None:
            h, lengths = self.adapter.downsample(h, lengths)
        valid = torch.arange(h.shape[1], device=h.device)[None, :] < lengths[:, None]
        return self.adapter(h[valid])

    def _encode_with_queries(self, audio: torch.Tensor, audio_lengths: torch.Tensor) -> torch.Tensor:
        """Q-Former: ``queries`` frames per clip with at least one encoder frame, clip by clip.

        The queries read each clip's own frames; under plain Whisper semantics (window mode without the key
        padding mask, as DeSTA2 runs it) they read the whole padded window, as the encoder does."""
        encoder_trains = any(p.requires_grad for p in self.encoder.parameters())
        with torch.set_grad_enabled(torch.is_grad_enabled() and encoder_trains):
            states, frames = self.encoder.forward_layers(audio, audio_lengths, self.adapter.encoder_layers)
        enc = self.cfg.encoder
        keys = frames
        if enc.input_mode == "window" and not enc.window_key_padding_mask:
            keys = torch.full_like(frames, states[0].shape[1])
        out = self.adapter(states, keys)[frames > 0]
        out = out.reshape(-1, out.shape[-1])
        unreached = self._unreached_encoder_term()
        return out if unreached is None else out + unreached.to(out.dtype)

    def _unreached_encoder_term(self) -> torch.Tensor | None:
        """``0 * sum`` of the trainable encoder parameters past the Q-Former's last tapped layer: they run but
        feed nothing, and data-parallel gradient reduction waits for every trainable parameter."""
        top, depth = max(self.adapter.encoder_layers), self.cfg.encoder.num_layers
        modules = list(self.encoder.transformer.layers[top:])
        if top < depth:
            modules.append(self.encoder.final_layernorm)
        params = [p for m in modules for p in m.parameters() if p.requires_grad]
        if not params:
            return None
        return torch.stack([p.sum() for p in params]).sum() * 0.0

    def _untouched_parameters_term(self) -> torch.Tensor | None:
        params = [p for m in (self.encoder, self.adapter) for p in m.parameters() if p.requires_grad]
        if not params:
            return None
        return torch.stack([p.sum() for p in params]).sum() * 0.0

    def splice_audio(self, embeddings: torch.Tensor, tokens: torch.Tensor, audio: torch.Tensor | None,
                     audio_lengths: torch.Tensor | None) -> torch.Tensor:
        """Write the clips' frames into the placeholder positions of ``embeddings`` ([s, b, h])."""
        placeholder = tokens == self.cfg.audio_placeholder_id  # [b, s]
        num_placeholders = int(placeholder.sum())
        num_clips = 0 if audio is None else int(audio.shape[0])
        if num_clips and audio_lengths is None:
            raise ValueError("audio given without audio_lengths")
        frames = self.encode_audio(audio, audio_lengths) if num_clips else None
        num_frames = 0 if frames is None else int(frames.shape[0])
        if num_frames != num_placeholders:
            raise ValueError(
                f"the batch has {num_placeholders} audio placeholder tokens (id {self.cfg.audio_placeholder_id}) "
                f"but its {num_clips} clips give {num_frames} encoder frames; each clip needs exactly "
                f"frames.num_audio_frames(length, spec) placeholders with this model's {self.cfg.frame_spec()}")
        if not num_frames:
            touch = self._untouched_parameters_term()
            return embeddings if touch is None else embeddings + touch.to(embeddings.dtype)
        # In [b, s, h] layout masked_scatter fills placeholders in the row-major order of ``tokens``,
        # which is the order the clips (and so the frames) come in.
        by_batch = embeddings.transpose(0, 1)
        by_batch = by_batch.masked_scatter(placeholder.unsqueeze(-1), frames.to(embeddings.dtype))
        return by_batch.transpose(0, 1).contiguous()

    # -- forward -----------------------------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, position_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                labels: torch.Tensor | None = None, audio: torch.Tensor | None = None,
                audio_lengths: torch.Tensor | None = None, runtime_gather_output: bool | None = None,
                documents: DocumentLayout | None = None):
        """``documents``: keep the packed documents of each sample apart (``documents.py``); full-length
        ``[b, s]`` like tokens, on every pipeline stage."""
        config = self.config
        thd = documents is not None and documents.reset_attention and self.documents_as_thd
        if documents is not None and config.context_parallel_size > 1:
            raise ValueError("documents kept apart (--reset-attention-mask / --reset-position-ids) do not run "
                             "with context parallelism; use --context-parallel-size 1")
        decoder_input = None
        if self.pre_process:
            embeddings = self.language_model.embedding(input_ids=tokens, position_ids=position_ids)
            embeddings = self.splice_audio(embeddings, tokens, audio, audio_lengths)
            if thd:  # [s, b, h] -> one packed sequence [b * s, 1, h], sample by sample
                embeddings = embeddings.transpose(0, 1).reshape(-1, 1, embeddings.shape[-1])
            if config.context_parallel_size > 1:
                embeddings = slice_for_cp(embeddings, seq_dim=0)
            if config.sequence_parallel:
                tp = config.tensor_model_parallel_size
                if embeddings.shape[0] % tp:
                    raise ValueError(f"sequence parallelism needs the sequence length ({embeddings.shape[0]} per "
                                     f"context-parallel rank) divisible by tensor-parallel size {tp}")
                embeddings = tensor_parallel.scatter_to_sequence_parallel_region(embeddings)
                if config.clone_scatter_output_in_embedding:
                    embeddings = embeddings.clone()
            decoder_input = embeddings
        if labels is not None and config.context_parallel_size > 1:
            labels = slice_for_cp(labels, seq_dim=1)
        return run_language_model(self.language_model, tokens, position_ids, labels, documents, thd, self.use_te,
                                  decoder_input=decoder_input, attention_mask=attention_mask,
                                  runtime_gather_output=runtime_gather_output)
