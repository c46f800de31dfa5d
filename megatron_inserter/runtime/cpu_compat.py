"""megatron-core on machines without CUDA: every bridge lives here and nowhere else.

megatron-core assumes a GPU in a handful of places that have nothing to do with the maths. On a machine
where ``torch.cuda.is_available()`` is False, ``apply()`` bridges them so the real megatron-core code
(tensor/pipeline/data parallel, the Megatron optimizer, dist checkpointing) runs under gloo on CPU.
On CUDA machines ``apply()`` does nothing. It is idempotent.

The bridges (checked against megatron-core 0.16.1; the call sites are the same in 0.17-0.19):

1. ``torch.cuda.*`` as seen by megatron-core modules. Many modules create tensors with
   ``device=torch.cuda.current_device()`` or ``device="cuda"`` (pipeline schedules' token counters,
   p2p shape exchange, sequence-parallel gathers in tensor_parallel.mappings, rotary embeddings'
   ``inv_freq``, the optimizer's found-inf/scale tensors, clip_grads, utils' norm helpers, DDP's
   grad buffers and 0.19's ``torch.cuda.current_stream()`` in param_and_grad_buffer). Instead of
   patching torch for the whole process, each ``megatron.core`` module's global name ``torch`` is
   replaced by a thin proxy: factory functions map a CUDA device to the CPU, ``torch.cuda`` answers
   ``current_device()`` with the CPU device, streams/events/synchronize are no-ops, and the CUDA RNG
   functions act on the CPU generator. Everything else is the real torch. Modules imported later are
   patched on import by a meta-path hook.
2. ``tensor_parallel.random._get_cuda_rng_state/_set_cuda_rng_state``: the model-parallel RNG tracker
   (used by attention even with dropout 0, and by activation recomputation) forks CUDA generator
   states; on CPU it forks the CPU generator, which is the one CPU dropout and init draw from.
3. ``optimizer.clip_grads.clip_grad_by_total_norm_fp32`` asserts ``torch.cuda.FloatTensor`` grads; the
   CPU version scales the same gradients by the same coefficient.

4. Pipeline p2p under gloo: the batched path (``batch_p2p_comm=True``, the default) posts
   send-to-previous before send-to-next, while the peer posts receive-from-previous first. With PP=2 both
   peers are the same rank and gloo matches messages in posting order, so under the interleaved
   (virtual pipeline) schedule an activation and a gradient of equal shape can swap silently.
   ``config_overrides()`` turns batching off; megatron-core's unbatched path separates the two
   directions on two communicators. Applied to every TransformerConfig the package builds.
5. ``LanguageModule.setup_embeddings_and_output_layer`` moves the shared embedding to the GPU with
   ``weight.data.cuda()`` before all-reducing it between the first and last pipeline stage (tied
   embeddings with PP > 1). The bridge runs that method with ``Tensor.cuda`` as the identity.

Not bridged, by design: the distributed optimizer refuses CPU parameters (use the plain Megatron
optimizer on CPU; ``training`` picks it), and Transformer Engine / apex are never imported on CPU.
"""

from __future__ import annotations

import importlib.abc
import sys
import types

import torch

_APPLIED = False
_CPU = torch.device("cpu")


def _is_cuda_device(device) -> bool:
    if device is None:
        return False
    if isinstance(device, int):
        return True  # a bare index means a CUDA ordinal
    if isinstance(device, str):
        return device.startswith("cuda")
    if isinstance(device, torch.device):
        return device.type == "cuda"
    return False


def _cpu_factory(fn):
    def wrapper(*args, **kwargs):
        if _is_cuda_device(kwargs.get("device")):
            kwargs["device"] = _CPU
        kwargs.pop("pin_memory", None)
        return fn(*args, **kwargs)

    wrapper.__name__ = getattr(fn, "__name__", "factory")
    wrapper.__wrapped__ = fn
    return wrapper


class _NullStream:
    def __init__(self, *args, **kwargs):
        pass

    def wait_stream(self, *args, **kwargs):
        pass

    def synchronize(self):
        pass

    def record_event(self, *args, **kwargs):
        return _NullEvent()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _NullEvent(_NullStream):
    def record(self, *args, **kwargs):
        pass

    def wait(self, *args, **kwargs):
        pass

    def query(self):
        return True

    def elapsed_time(self, other):
        return 0.0


class _CpuCuda(types.ModuleType):
    """What ``torch.cuda`` looks like to megatron-core on a CPU-only machine."""

    def __init__(self):
        super().__init__("torch.cuda")
        self.Stream = _NullStream
        self.Event = _NullEvent
        self.nvtx = types.SimpleNamespace(range_push=lambda *a, **k: None, range_pop=lambda *a, **k: None)
        self.random = types.SimpleNamespace(
            get_rng_state=lambda device=None: torch.get_rng_state(),
            set_rng_state=lambda state, device=None: torch.set_rng_state(state),
        )

    def __getattr__(self, name):
        return getattr(torch.cuda, name)

    @staticmethod
    def current_device():
        return _CPU

    @staticmethod
    def device_count():
        return 0

    @staticmethod
    def synchronize(*args, **kwargs):
        pass

    @staticmethod
    def empty_cache():
        pass

    @staticmethod
    def current_stream(*args, **kwargs):
        return _NullStream()

    default_stream = current_stream

    @staticmethod
    def stream(*args, **kwargs):
        return _NullStream()

    @staticmethod
    def get_rng_state(device=None):
        return torch.get_rng_state()

    @staticmethod
    def set_rng_state(state, device=None):
        torch.set_rng_state(state)

    @staticmethod
    def manual_seed(seed):
        torch.manual_seed(seed)

    manual_seed_all = manual_seed

    @staticmethod
    def max_memory_allocated(*args, **kwargs):
        return 0

    memory_allocated = max_memory_allocated


class _CpuTorch(types.ModuleType):
    """The ``torch`` that megatron-core modules see on a CPU-only machine."""

    _FACTORIES = ("tensor", "zeros", "ones", "empty", "full", "arange", "rand", "randn", "randint",
                  "zeros_like", "ones_like", "empty_like", "full_like", "as_tensor", "linspace")

    def __init__(self):
        super().__init__("torch")
        self.cuda = _CpuCuda()
        for name in self._FACTORIES:
            setattr(self, name, _cpu_factory(getattr(torch, name)))

    def __getattr__(self, name):
        return getattr(torch, name)


_PROXY: _CpuTorch | None = None


def _patch_module(module: types.ModuleType) -> None:
    if getattr(module, "torch", None) is torch:
        module.torch = _PROXY


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches ``megatron.core`` modules imported after ``apply()``."""

    def find_spec(self, fullname, path, target=None):
        if not fullname.startswith("megatron.core"):
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
                loader = spec.loader
                original_exec = loader.exec_module

                def exec_module(module, _orig=original_exec):
                    _orig(module)
                    _patch_module(module)

                try:
                    loader.exec_module = exec_module
                except (AttributeError, TypeError):
                    pass
                return spec
        return None


def _cpu_get_rng_state(device=None, clone=False, graph_safe=False):
    return torch.get_rng_state()


def _cpu_set_rng_state(new_state, device=-1, graph_safe=False):
    torch.set_rng_state(new_state)


def _cpu_clip_grad_by_total_norm_fp32(parameters, max_norm, total_norm, use_decoupled_grad=False):
    if isinstance(parameters, torch.Tensor):
        parameters = [parameters]
    clip_coeff = max_norm / (total_norm + 1.0e-6)
    if clip_coeff >= 1.0:
        return
    for p in parameters:
        grad = getattr(p, "decoupled_grad", None) if use_decoupled_grad else p.grad
        if grad is not None:
            grad.detach().mul_(clip_coeff)


def _with_tensor_cuda_as_identity(method):
    def wrapper(self, *args, **kwargs):
        original = torch.Tensor.cuda
        torch.Tensor.cuda = lambda t, *a, **k: t
        try:
            return method(self, *args, **kwargs)
        finally:
            torch.Tensor.cuda = original

    wrapper.__wrapped__ = method
    return wrapper


def apply() -> bool:
    """Bridge megatron-core's CUDA-only call sites when CUDA is unavailable. Returns True if applied."""
    global _APPLIED, _PROXY
    if torch.cuda.is_available():
        return False
    if _APPLIED:
        return True
    _PROXY = _CpuTorch()
    import megatron.core  # noqa: F401 - make sure the package exists before hooking it

    sys.meta_path.insert(0, _PatchOnImport())
    for name, module in list(sys.modules.items()):
        if name.startswith("megatron.core") and module is not None:
            _patch_module(module)

    from megatron.core.tensor_parallel import random as tp_random

    tp_random._get_cuda_rng_state = _cpu_get_rng_state
    tp_random._set_cuda_rng_state = _cpu_set_rng_state

    from megatron.core.optimizer import clip_grads

    clip_grads.clip_grad_by_total_norm_fp32 = _cpu_clip_grad_by_total_norm_fp32

    from megatron.core.models.common.language_module.language_module import LanguageModule

    LanguageModule.setup_embeddings_and_output_layer = _with_tensor_cuda_as_identity(
        LanguageModule.setup_embeddings_and_output_layer)
    for name, module in list(sys.modules.items()):
        if name.startswith("megatron.core.optimizer") and hasattr(module, "clip_grad_by_total_norm_fp32"):
            module.clip_grad_by_total_norm_fp32 = _cpu_clip_grad_by_total_norm_fp32
    _APPLIED = True
    return True


def config_overrides() -> dict:
    """TransformerConfig fields that must differ on a CPU (gloo) run; empty on CUDA."""
    if torch.cuda.is_available():
        return {}
    return {"batch_p2p_comm": False}


def is_applied() -> bool:
    return _APPLIED
