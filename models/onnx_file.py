"""User models given as an ONNX file: the main job skips export and validates against the same file run in ONNX
Runtime fp32 (or against golden outputs the user supplies, `--golden outputs.npz`), so the reduced-precision
artifacts it makes (fp16, int8, fp8, engines) are judged against the file that came in.

The file must take one float input of patch tokens [B, N, D] or [B, h, w, D] (D static); its nodes must be standard ONNX, ONNX
Runtime's com.microsoft ops or our own `ntc` ops (anything else is an op no target can run: refused up front).
"""

import os
from pathlib import Path

import numpy as np
import onnx
import torch

from ..util.errors import NtcError
from .foreign import ForeignTokenModel

ARCH = "onnx"
KNOWN_DOMAINS = ("", "ai.onnx", "com.microsoft")
NTC_OPS = ("BcDecode", "WindowAttention")


def _dims(value: onnx.ValueInfoProto) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def check_ops(model: onnx.ModelProto, source: str) -> None:
    """NtcError naming the first node of an op domain no runtime of ours implements."""
    from ..ops.domain import DOMAIN

    for node in model.graph.node:
        if (node.domain == DOMAIN and node.op_type in NTC_OPS) or node.domain in KNOWN_DOMAINS:
            continue
        raise NtcError(f"{source}: node {node.name or node.op_type!r} is the unknown custom op "
                       f"{node.domain}::{node.op_type}; only standard ONNX, com.microsoft and ntc ops "
                       f"({', '.join(NTC_OPS)}) can be validated and built")


def _session(path: Path):
    """ONNX Runtime CPU session of the file: our ntc ops registered, Q/DQ pairs computed exactly (as TensorRT does)."""
    import onnxruntime as ort

    from ..ops.ort_registry import has_plugin_nodes, prepare_for_ort, register_custom_ops

    model = onnx.load(str(path))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.add_session_config_entry("session.disable_quant_qdq", "1")
    register_custom_ops(so)
    data = (prepare_for_ort(model) if has_plugin_nodes(model) else model).SerializeToString()
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


class OnnxFileModel(ForeignTokenModel):
    """An ONNX file with the token-model interface the toolchain asks for; calling it runs ONNX Runtime fp32."""

    arch = ARCH

    def __init__(self, path: Path, model: onnx.ModelProto):
        super().__init__()
        self.onnx_path = path
        graph = model.graph
        inits = {i.name for i in graph.initializer}
        inputs = [i for i in graph.input if i.name not in inits]
        if len(inputs) != 1:
            raise NtcError(f"{path.name}: the model takes {len(inputs)} inputs; the toolchain feeds one input of "
                           "patch tokens [B, N, D]")
        dims = _dims(inputs[0])  # None: a dynamic dim
        elem = inputs[0].type.tensor_type.elem_type
        self.set_input(dims if elem == onnx.TensorProto.FLOAT else [], path.name,
                       f"input {inputs[0].name!r} ({onnx.TensorProto.DataType.Name(elem)})")
        self.input_names = [inputs[0].name]
        self.output_names = [o.name for o in graph.output]
        self.golden = None  # {output: array} from --golden; None: ONNX Runtime fp32 of this file
        self.config = {"source": path.name, "input": dims, "input_names": self.input_names,
                       "output_names": self.output_names, "golden": "onnxruntime fp32 of the same file"}
        self._session = None

    def forward(self, tokens: torch.Tensor):
        if self._session is None:
            self._session = _session(self.onnx_path)
        x = tokens.detach().cpu().numpy().astype(np.float32)
        out = self._session.run(self.output_names, {self.input_names[0]: x})
        outs = tuple(torch.from_numpy(np.asarray(o)) for o in out)
        return outs[0] if len(outs) == 1 else outs


def load_onnx_file(path: str | os.PathLike) -> OnnxFileModel:
    """Check and wrap an ONNX file. Every problem is a one-line NtcError."""
    path = Path(path)
    if not path.exists():
        raise NtcError(f"{path}: no such ONNX file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf decode errors have no common type
        raise NtcError(f"{path}: not a readable ONNX model ({(str(e).splitlines() or [''])[0][:200]})") from None
    check_ops(model, path.name)
    return OnnxFileModel(path, model).eval()


def use_golden(module: OnnxFileModel, path: str | os.PathLike) -> None:
    """Validate against `path` (.npz, one array per output name, samples in the validation data's order)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            golden = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise NtcError(f"{path}: not a readable .npz of golden outputs ({e})") from None
    missing = [n for n in module.output_names if n not in golden]
    if missing:
        raise NtcError(f"{path}: golden outputs lack {', '.join(missing)} (the model's outputs: "
                       f"{', '.join(module.output_names)})")
    from ..util.hashing import sha256_file

    module.golden = {n: golden[n] for n in module.output_names}
    module.config["golden"] = f"{path.name} (--golden)"
    module.config["golden_sha256"] = sha256_file(path)
