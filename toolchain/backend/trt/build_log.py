"""The builder's log: capture it (kVERBOSE) and read the per-layer engine summary out of it or the inspector JSON.

The engine inspector needs a deserialized engine (a GPU); without one the builder's verbose log carries the same
per-layer lines ("Layers:" block, one "Name: ..., LayerType: ..." line each), so both sources give one summary.
"""

import json
import re

_DTYPE_NAMES = {
    "float": "fp32", "fp32": "fp32", "half": "fp16", "fp16": "fp16", "bfloat16": "bf16", "bf16": "bf16",
    "int8": "int8", "fp8": "fp8", "float8": "fp8", "int32": "int32", "int64": "int64", "bool": "bool",
    "uint8": "uint8", "int4": "int4", "fp4": "fp4",
}
_ONNX_LAYER = re.compile(r"\[ONNX Layer: ([^\]]*)\]")
_LINE = re.compile(r"^Name: (?P<name>.*?), LayerType: (?P<type>[^,]*), ")
_INPUTS = re.compile(r"Inputs: \[(?P<ins>.*?)\], (?:Constants|Outputs): \[")
_OUTPUTS = re.compile(r"Outputs: \[(?P<outs>.*?)\], TacticName: (?P<tactic>[^,]*),")
_DTYPE = re.compile(r"Datatype: (\w+)")


def make_capture_logger(trt):
    """A trt.ILogger subclass instance keeping every message (min severity VERBOSE) in `.records`."""

    class CaptureLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.records: list[tuple[str, str]] = []

        def log(self, severity, msg):
            self.records.append((str(severity).rsplit(".", 1)[-1], msg))

        def text(self) -> str:
            return "\n".join(f"[{sev}] {msg}" for sev, msg in self.records)

        def errors(self) -> list[str]:
            return [msg for sev, msg in self.records if sev in ("ERROR", "INTERNAL_ERROR")]

    return CaptureLogger()


def normalize_dtype(name: str | None) -> str | None:
    if not name:
        return None
    low = name.lower()
    if low in _DTYPE_NAMES:
        return _DTYPE_NAMES[low]
    # Inspector JSON spells formats like "Row major linear FP16 format"; pick the dtype word out of it.
    for word in re.findall(r"[A-Za-z0-9]+", low):
        if word in _DTYPE_NAMES:
            return _DTYPE_NAMES[word]
    return low


# Narrowest first: a layer's precision is the narrowest compute type it reads or writes (fp8 gemm -> fp32 out: fp8).
_COMPUTE_ORDER = ("fp4", "int4", "fp8", "int8", "fp16", "bf16", "fp32")


def _layer(name: str, layer_type: str, in_dtypes: list[str], out_dtypes: list[str], metadata: str,
           tactic: str | None) -> dict:
    onnx_layers = _ONNX_LAYER.findall(metadata or "")
    ins = [d for d in (normalize_dtype(x) for x in in_dtypes) if d]
    outs = [d for d in (normalize_dtype(x) for x in out_dtypes) if d]
    compute = [d for d in _COMPUTE_ORDER if d in ins or d in outs]
    return {
        "name": name,
        "type": layer_type,
        "precision": compute[0] if compute else None,
        "input_dtypes": sorted(set(ins)),
        "output_dtypes": sorted(set(outs)),
        "fused": len(onnx_layers) > 1,
        "onnx_layers": onnx_layers,
        "tactic": tactic or None,
    }


def layers_from_log(text: str) -> list[dict]:
    """Per-layer summary from the builder's verbose log (its "Layers:" block, one line per engine layer)."""
    layers = []
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        ins = _INPUTS.search(line)
        outs = _OUTPUTS.search(line)
        meta = line.split("Metadata: ", 1)[1] if "Metadata: " in line else ""
        layers.append(_layer(m["name"], m["type"].strip(), _DTYPE.findall(ins["ins"]) if ins else [],
                             _DTYPE.findall(outs["outs"]) if outs else [], meta,
                             outs["tactic"].strip() if outs else None))
    return layers


def layers_from_inspector(info_json: str) -> list[dict]:
    """Per-layer summary from IEngineInspector.get_engine_information(JSON) at kDETAILED verbosity."""
    info = json.loads(info_json)
    layers = []
    for entry in info.get("Layers", []):
        if isinstance(entry, str):  # kLAYER_NAMES_ONLY verbosity: names and nothing else
            layers.append(_layer(entry, "unknown", [], [], "", None))
            continue
        dtypes = {key: [t.get("Datatype") or t.get("Format/Datatype") or "" for t in entry.get(key, [])]
                  for key in ("Inputs", "Outputs")}
        layers.append(_layer(entry.get("Name", ""), entry.get("LayerType", "unknown"), dtypes["Inputs"],
                             dtypes["Outputs"], str(entry.get("Metadata", "")), entry.get("TacticName")))
    return layers


def summarize(layers: list[dict]) -> dict:
    """Counts for reports: layers, fused layers, layers per precision."""
    per_precision: dict[str, int] = {}
    for layer in layers:
        key = layer["precision"] or "none"
        per_precision[key] = per_precision.get(key, 0) + 1
    return {"layers": len(layers), "fused": sum(layer["fused"] for layer in layers), "by_precision": per_precision}
