"""OrtRunner: an ONNX file run with ONNX Runtime (CPU, CUDA EP where present), with the same interface as every
runner: `run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]`."""

from pathlib import Path

import numpy as np

from ...util.errors import NtcError
from ..onnx.int8_io import dequantize, interface_feed, interface_output, interface_scales, quantize


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
    `float_io=False` passes an int8-interface graph's int8 tensors through as they are (a server's twin of the plan);
    by default its float feeds are quantized and its int8 outputs dequantized with the graph's scales.
    """

    backend = "onnxruntime"

    def __init__(self, path, providers=None, custom_ops: bool = True, threads: int | None = None,
                 fused_qdq: bool = False, float_io: bool = True):
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
        # an int8-interface graph's per-tensor scales: float feeds are quantized, int8 outputs dequantized with them
        self.int8_scales = interface_scales(self.session.get_modelmeta().custom_metadata_map) if float_io else {}

    @property
    def target(self) -> str:
        return "cuda" if "CUDAExecutionProvider" in self.providers else "cpu"

    def _graph_feed(self, name: str, x: np.ndarray) -> np.ndarray:
        """A float feed in the input's own type: fp16, fp32, or int8 quantized with the interface scale."""
        kind = self.input_types[name]
        if kind == "tensor(int8)":
            return interface_feed(name, x, self.int8_scales)
        if kind == "tensor(float16)":
            return x.astype(np.float16)
        if kind == "tensor(float)":
            return x.astype(np.float32)
        return x

    @property
    def rounds_inputs(self) -> bool:
        """Whether the graph takes some float feed in fewer bits than float32 (fp16 inputs, an int8 interface)."""
        return any(t == "tensor(float16)" or n in self.int8_scales for n, t in self.input_types.items())

    def seen_inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The float feeds as the graph's arithmetic sees them, in float32: rounded to fp16, or quantized and
        dequantized at an int8 interface (what a reference on the same inputs must be fed)."""
        seen = {}
        for name, x in feeds.items():
            if name not in self.input_types or not np.issubdtype(x.dtype, np.floating):
                seen[name] = x
            elif name in self.int8_scales:
                seen[name] = dequantize(quantize(x, self.int8_scales[name]), self.int8_scales[name])
            else:
                seen[name] = self._graph_feed(name, x).astype(np.float32)
        return seen

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cast = {name: np.ascontiguousarray(self._graph_feed(name, feeds[name])) for name in self.input_names}
        outs = self.session.run(None, cast)
        return {n: interface_output(n, o, self.int8_scales) for n, o in zip(self.output_names, outs)}
