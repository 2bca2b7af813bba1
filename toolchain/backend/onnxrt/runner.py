"""OrtRunner: an ONNX file run with ONNX Runtime (CPU, CUDA EP where present), with the same interface as every
runner: `run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]`."""

from pathlib import Path

import numpy as np

from ...util.errors import NtcError


def ort_session_options(threads: int | None = None, fused_qdq: bool = False):
    """Session options; unless `fused_qdq`, Q/DQ pairs keep their exact arithmetic (dequantize, float op), as
    TensorRT computes them: ORT's fused int8 CPU kernels differ by CPU (on AVX2 without VNNI their u8 x s8 path
    saturates 16-bit sums), so every fidelity figure uses exact sessions and only latency uses fused ones."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    if not fused_qdq:
        so.add_session_config_entry("session.disable_quant_qdq", "1")
    return so


class OrtRunner:
    """ONNX Runtime session over an ONNX file; the CUDA EP is used where onnxruntime-gpu and a GPU are present.

    `custom_ops=True` registers the ntc:: custom-op implementations so graphs with plugin nodes run on the CPU.
    `fused_qdq=True` lets ORT fuse Q/DQ into its int8 kernels (deployment speed; CPU-dependent numerics).
    """

    backend = "onnxruntime"

    def __init__(self, path, providers=None, custom_ops: bool = True, threads: int | None = None,
                 fused_qdq: bool = False):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.exists():
            raise NtcError(f"{self.path}: no such ONNX file")
        so = ort_session_options(threads, fused_qdq)
        source = str(self.path)
        if custom_ops:
            import onnx

            from ...ops.ort_registry import has_plugin_nodes, prepare_for_ort, register_custom_ops

            model = onnx.load(source, load_external_data=False)
            if has_plugin_nodes(model):
                onnx.load_external_data_for_model(model, str(self.path.parent))
                source = prepare_for_ort(model).SerializeToString()
                register_custom_ops(so)
        available = ort.get_available_providers()
        providers = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self.session = ort.InferenceSession(source, so, providers=providers)
        except Exception as e:  # ORT raises its own exception types; the message names the problem
            raise NtcError(f"{self.path}: ONNX Runtime cannot load it: {str(e).strip().splitlines()[0][:300]}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.input_types = {i.name: i.type for i in self.session.get_inputs()}
        self.providers = self.session.get_providers()

    @property
    def target(self) -> str:
        return "cuda" if "CUDAExecutionProvider" in self.providers else "cpu"

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cast = {}
        for name in self.input_names:
            x = feeds[name]
            if self.input_types[name] == "tensor(float16)":
                x = x.astype(np.float16)
            elif self.input_types[name] == "tensor(float)":
                x = x.astype(np.float32)
            cast[name] = np.ascontiguousarray(x)
        outs = self.session.run(None, cast)
        return {n: np.asarray(o) for n, o in zip(self.output_names, outs)}
