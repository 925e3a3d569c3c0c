"""Run the unmodified ``training_hub.osft(...)`` call on a machine without CUDA.

mini-trainer 0.9.0's worker hard-codes nccl, a CUDA device mesh, flash-attn, bf16 FSDP2 params and a
CUDA SVD device, and its launcher runs ``torchrun`` from the PATH. This module holds both halves of
the small patch below (measured on a 2-core CPU box: see docs/step-train.md):

* caller side, :func:`cpu_launcher`: a context manager that swaps ``mini_trainer.api_train.StreamablePopen``
  so the worker command runs as ``sys.executable -m torch.distributed.run <this file> ...`` (the venv's
  torch, never the global PATH) and the worker script is this file;
* worker side, ``python cpu_launcher.py <mini_trainer.train CLI args>``: applies the worker patches
  (gloo, CPU mesh, sdpa via ``TESTING=true``, no-op CUDA peak-memory stats, fp32 mixed precision, SVD
  device proxy, tied-weight-safe save) then runs ``mini_trainer.train.app()`` with the same arguments.

It depends on private names of the pinned versions (``training-hub==0.11.2``,
``rhai-innovation-mini-trainer==0.9.0``); :data:`PATCHED_NAMES` lists them and a test fails loudly when
an upgrade removes one. The worker half imports nothing from ``steps`` (it runs as a plain script).
"""

import os
import sys

if __name__ == "__main__":  # run as the worker script: keep its own folder off sys.path
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]

import contextlib  # noqa: E402
from collections.abc import Iterator  # noqa: E402

SHIM_FILE = os.path.abspath(__file__)
TESTED_VERSIONS = {"training-hub": "0.11.2", "rhai-innovation-mini-trainer": "0.9.0"}

# (module, attribute) pairs this module reads or replaces; they must exist in the pinned versions.
PATCHED_NAMES: tuple[tuple[str, str], ...] = (
    ("mini_trainer.api_train", "StreamablePopen"),
    ("mini_trainer.api_train", "run_training"),
    ("mini_trainer.utils", "init_distributed_environment"),
    ("mini_trainer.utils", "_CONTROL_PROCESS_GROUP"),
    ("mini_trainer.train", "init_distributed_environment"),
    ("mini_trainer.train", "app"),
    ("mini_trainer.setup_model_for_training", "init_device_mesh"),
    ("mini_trainer.setup_model_for_training", "MixedPrecisionPolicy"),
    ("mini_trainer.osft_utils", "torch"),
    ("safetensors.torch", "save_file"),
)


@contextlib.contextmanager
def cpu_launcher() -> Iterator[None]:
    """While active, mini-trainer launches its workers through this file with the venv's torchrun."""
    import mini_trainer.api_train as at

    original = at.StreamablePopen

    class CPUStreamablePopen(original):  # type: ignore[misc,valid-type]
        def __init__(self, log_file: str, command: list) -> None:
            super().__init__(log_file, cpu_command(command))

    at.StreamablePopen = CPUStreamablePopen
    try:
        yield
    finally:
        at.StreamablePopen = original


def cpu_command(command: list) -> list[str]:
    """Rewrite mini-trainer's launch command: venv torchrun by module, this file as the worker script."""
    cmd = [str(c) for c in command]
    if cmd and cmd[0] == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", *cmd[1:]]
    return [SHIM_FILE if c.replace(os.sep, "/").endswith("mini_trainer/train.py") else c for c in cmd]


def venv_torchrun_command(command: list) -> list[str]:
    """GPU path: only replace a bare ``torchrun`` with the running interpreter's ``torch.distributed.run``."""
    cmd = [str(c) for c in command]
    if cmd and cmd[0] == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", *cmd[1:]]
    return cmd


@contextlib.contextmanager
def venv_torchrun() -> Iterator[None]:
    """While active, mini-trainer's ``torchrun`` comes from this interpreter, not the PATH (GPU path)."""
    import mini_trainer.api_train as at

    original = at.StreamablePopen

    class VenvStreamablePopen(original):  # type: ignore[misc,valid-type]
        def __init__(self, log_file: str, command: list) -> None:
            super().__init__(log_file, venv_torchrun_command(command))

    at.StreamablePopen = VenvStreamablePopen
    try:
        yield
    finally:
        at.StreamablePopen = original


# ----------------------------------------------------------------------------------------------- worker side


def _patch_worker() -> None:
    """Apply the worker-side CPU patches (call before ``mini_trainer.train.app()``)."""
    os.environ.setdefault("TESTING", "true")  # mini-trainer falls back to sdpa attention only when TESTING=true
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import types
    from datetime import timedelta

    import mini_trainer.osft_utils as ou
    import mini_trainer.setup_model_for_training as smt
    import mini_trainer.train as mt
    import mini_trainer.utils as mu
    import safetensors.torch as st
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if not hasattr(torch._C, "_cuda_resetPeakMemoryStats"):
        torch.cuda.reset_peak_memory_stats = lambda *a, **k: None

    def init_gloo() -> None:
        if not dist.is_initialized():
            dist.init_process_group("gloo", timeout=timedelta(minutes=30))
        dist.barrier()

    mu.init_distributed_environment = init_gloo
    mt.init_distributed_environment = init_gloo
    mu._CONTROL_PROCESS_GROUP = None

    mesh = smt.init_device_mesh
    smt.init_device_mesh = lambda _device, *a, **k: mesh("cpu", *a, **k)
    smt.MixedPrecisionPolicy = lambda *a, **k: MixedPrecisionPolicy(param_dtype=torch.float32,
                                                                     reduce_dtype=torch.float32)

    real_torch = torch
    proxy = types.ModuleType("torch_cpu_proxy")
    proxy.__getattr__ = lambda name: getattr(real_torch, name)  # type: ignore[method-assign]

    def device(kind: object, index: int | None = None) -> torch.device:
        if kind == "cuda":
            return real_torch.device("cpu")
        return real_torch.device(kind) if index is None else real_torch.device(kind, index)

    proxy.device = device  # type: ignore[attr-defined]
    ou.torch = proxy

    save_file = st.save_file

    def save_file_unaliased(tensors: dict, filename: str, metadata: dict | None = None) -> None:
        seen: set[tuple[int, int]] = set()
        out = {}
        for name, t in tensors.items():
            key = (t.untyped_storage().data_ptr(), t.storage_offset())
            out[name] = t.clone() if key in seen else t
            seen.add(key)
        save_file(out, filename, metadata=metadata)

    st.save_file = save_file_unaliased


def main() -> None:
    """Worker entry point: patch, then run mini-trainer's own CLI with the unchanged arguments."""
    _patch_worker()
    import mini_trainer.train as mt

    sys.argv[0] = mt.__file__
    mt.app()


if __name__ == "__main__":
    main()
