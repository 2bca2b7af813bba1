"""TrtRunner: run a TensorRT / TensorRT-RTX engine from the manifest, with the OrtRunner interface.

It runs only where a CUDA device of the engine's SM and the exact backend version it was built with are present;
`can_run()` says why not otherwise, so callers record `executed: false` and the reason instead of numbers.
"""

from pathlib import Path

import numpy as np

from ...ops import trt_registry
from ...util.errors import NtcError
from ...util.hashing import sha256_file
from ..onnx.int8_io import interface_feed, interface_output
from . import env as trt_env
from .manifest import ManifestEntry


def _cuda_device_sm() -> tuple[int | None, str]:
    """(SM of CUDA device 0, "") or (None, why there is none)."""
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed (TrtRunner allocates CUDA buffers with it)"
    if not torch.cuda.is_available():
        return None, "no CUDA device"
    major, minor = torch.cuda.get_device_capability(0)
    return major * 10 + minor, ""


class TrtRunner:
    """Deserializes `engine_path` (a manifest entry says its backend, version, SM and plugins) and runs it."""

    def __init__(self, engine_path, manifest_entry: dict):
        self.engine_path = Path(engine_path)
        self.entry = dict(manifest_entry)
        self.backend = self.entry.get("backend", "tensorrt_rtx")
        self.int8_scales = self.entry.get("int8_interface") or {}  # float feeds/outputs at an int8 interface
        self._context = None

    def can_run(self) -> tuple[bool, str]:
        """(True, "") when this machine can execute the engine, else (False, reason)."""
        e = self.entry
        if not ManifestEntry.parse(e).is_engine or not e.get("engine"):
            return False, e.get("reason") or "no engine was built for this entry"
        if not self.engine_path.is_file():
            return False, f"engine file {self.engine_path} is missing"
        if e.get("sha256") and sha256_file(self.engine_path) != e["sha256"]:
            return False, f"engine file {self.engine_path.name} does not match the manifest sha256"
        if not trt_env.backend_available(self.backend):
            return False, f"{self.backend} is not installed"
        try:
            installed = trt_env.version_info(self.backend)["version"]
        except NtcError as err:
            return False, str(err)
        if e.get("backend_version") and installed != e["backend_version"]:
            return False, f"engine built with {self.backend} {e['backend_version']}, installed {installed}"
        sm, why = _cuda_device_sm()
        if sm is None:
            return False, why
        if e.get("sm") and sm != int(e["sm"]):
            return False, f"engine compiled for sm_{e['sm']}, device is sm_{sm}"
        if any(p.get("provider") == "python_creators" for p in e.get("plugins", [])):
            from ...native.kernels import kernels_library_path

            try:
                kernels_library_path()
            except NtcError as err:
                return False, f"the engine's Python plugins need the CUDA kernels: {err}"
        return True, ""

    def _load(self):
        ok, why = self.can_run()
        if not ok:
            raise NtcError(f"cannot run {self.engine_path.name}: {why}")
        trt = trt_env.import_backend(self.backend)
        if any(p.get("provider") == "python_creators" for p in self.entry.get("plugins", [])):
            trt_registry.register_creators(trt)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise NtcError(f"{self.engine_path}: {self.backend} could not deserialize the engine")
        self._context = self._engine.create_execution_context()
        self._trt = trt
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        mode = trt.TensorIOMode.INPUT
        self.input_names = [n for n in names if self._engine.get_tensor_mode(n) == mode]
        self.output_names = [n for n in names if self._engine.get_tensor_mode(n) != mode]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        if self._context is None:
            self._load()
        trt, ctx, engine = self._trt, self._context, self._engine
        keep = []
        for name in self.input_names:
            if name not in feeds:
                raise NtcError(f"missing input {name!r} for {self.engine_path.name}")
            dtype = trt.nptype(engine.get_tensor_dtype(name))
            feed = interface_feed(name, feeds[name], self.int8_scales)
            x = torch.from_numpy(np.ascontiguousarray(feed, dtype=dtype)).cuda()
            if not ctx.set_input_shape(name, tuple(x.shape)):
                raise NtcError(f"input {name!r} shape {tuple(x.shape)} is outside the engine's profile")
            ctx.set_tensor_address(name, x.data_ptr())
            keep.append(x)
        outputs = {}
        for name in self.output_names:
            shape = tuple(ctx.get_tensor_shape(name))
            dtype = torch.from_numpy(np.zeros(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
            out = torch.empty(shape, dtype=dtype, device="cuda")
            ctx.set_tensor_address(name, out.data_ptr())
            outputs[name] = out
        stream = torch.cuda.current_stream()
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise NtcError(f"{self.engine_path.name}: execution failed")
        stream.synchronize()
        return {name: interface_output(name, t.cpu().numpy(), self.int8_scales) for name, t in outputs.items()}
