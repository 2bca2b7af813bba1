#!/usr/bin/env python3
"""Run an EPContext model (`ntc-export build ... --epcontext`) with ONNX Runtime's TensorRT-RTX execution provider.

    python scripts/run_epcontext.py OUT/engines/rtx-ada/model.fp16.ctx.onnx [--feeds x.npz] [--fallback model.onnx]

An app developer's example: it needs only numpy, onnx and an onnxruntime with the provider, either built in
(an onnxruntime built with it, Windows ML) or as the plugin package `onnxruntime-ep-nv-tensorrt-rtx`. Feeds come from
--feeds (an .npz with one array per input name), else random ones at each input's optimal profile shape (the
model's notes carry the engine's profiles). Where the provider or a GPU it can use is absent it says so in one line
and exits 3, or runs --fallback (the plain ONNX the engine was built from) with ONNX Runtime's other providers.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError

EP = "NvTensorRTRTXExecutionProvider"
PLUGIN_PACKAGE = "onnxruntime_ep_nv_tensorrt_rtx"  # pip install onnxruntime-ep-nv-tensorrt-rtx


class Unavailable(Exception):
    """The provider, or a GPU it can use, is not here (one line)."""


def read_context(path: Path) -> tuple[onnx.ModelProto, dict]:
    """The context model (graph only: an embedded engine is a node attribute) and its EPContext notes."""
    model = onnx.load(str(path), load_external_data=False)
    nodes = [n for n in model.graph.node if n.op_type == "EPContext" and n.domain == "com.microsoft"]
    if len(nodes) != 1:
        raise ValueError(f"{path.name}: expected one com.microsoft EPContext node, found {len(nodes)}")
    notes = next((onnx.helper.get_attribute_value(a) for a in nodes[0].attribute if a.name == "notes"), b"{}")
    return model, json.loads(notes.decode() if isinstance(notes, bytes) else notes)


def make_feeds(model: onnx.ModelProto, notes: dict, npz: Path | None) -> dict[str, np.ndarray]:
    """Arrays from `npz` cast to the inputs' types, else random ones at each input's optimal profile shape."""
    rng = np.random.default_rng(0)
    feeds = {}
    for value in model.graph.input:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        if npz is not None:
            with np.load(npz) as data:
                if value.name not in data:
                    raise ValueError(f"{npz.name} has no array {value.name!r} (it has {', '.join(data.files)})")
                feeds[value.name] = data[value.name].astype(dtype)
            continue
        profile = notes.get("profiles", {}).get(value.name)
        shape = profile[1] if profile else [d.dim_value or 1 for d in value.type.tensor_type.shape.dim]
        if np.issubdtype(dtype, np.floating):
            feeds[value.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[value.name] = rng.integers(0, 128, shape).astype(dtype)
    return feeds


def register_python_plugins(notes: dict) -> None:
    """Engines built without --plugin-lib look their ops up among ntc_export's Python creators: register them in
    this process (an app without Python needs an engine built with --plugin-lib instead)."""
    ops = [p["op"] for p in notes.get("plugins", []) if p.get("route") == "python_creators"]
    if not ops:
        return
    try:
        from ntc_export.backend.trt.env import import_backend
        from ntc_export.ops.trt_registry import register_creators
    except ImportError:
        raise Unavailable(f"the engine runs {', '.join(ops)} through ntc_export's Python plugin creators and "
                          "ntc_export is not installed; rebuild with --plugin-lib libntc_trt_plugins.so") from None
    register_creators(import_backend("tensorrt_rtx"))
    print(f"registered ntc_export's Python plugin creators for {', '.join(ops)}", file=sys.stderr)


def open_session(path: Path, notes: dict) -> ort.InferenceSession:
    """A session on the TensorRT-RTX provider: the built-in one, else the plugin package's; Unavailable if neither
    is here or the provider cannot load this engine (no RTX GPU, another SM, another TensorRT-RTX release)."""
    built_for = f"engine for sm_{notes.get('sm', '?')}, TensorRT-RTX {notes.get('tensorrt_rtx', '?')}"
    try:
        if EP in ort.get_available_providers():
            session = ort.InferenceSession(str(path), providers=[EP])
        else:
            try:
                plugin = __import__(PLUGIN_PACKAGE)
            except ImportError:
                raise Unavailable(f"{EP} is not in this onnxruntime {ort.__version__} (it has "
                                  f"{', '.join(ort.get_available_providers())}) and {PLUGIN_PACKAGE} is not "
                                  "installed: pip install onnxruntime-ep-nv-tensorrt-rtx") from None
            ort.register_execution_provider_library(plugin.get_ep_name(), plugin.get_library_path())
            devices = [d for d in ort.get_ep_devices() if d.ep_name == plugin.get_ep_name()]
            if not devices:
                raise Unavailable(f"{plugin.get_ep_name()} found no GPU it can use ({built_for})")
            options = ort.SessionOptions()
            options.add_provider_for_devices(devices, {})
            session = ort.InferenceSession(str(path), sess_options=options)
    except Unavailable:
        raise
    except Exception as e:  # ONNX Runtime raises its own types, one per failure kind
        raise Unavailable(f"{EP} could not load {path.name} ({built_for}): {str(e).strip().splitlines()[0]}") from None
    if not any("TensorRT" in p or "TensorRt" in p for p in session.get_providers()):
        raise Unavailable(f"the session runs on {', '.join(session.get_providers())}, not {EP}")
    return session


def run(session: ort.InferenceSession, feeds: dict, runs: int) -> None:
    """One warm-up, then `runs` timed runs; prints each output's shape and type and the median latency."""
    outputs = session.run(None, feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1e3)
    for meta, value in zip(session.get_outputs(), outputs):
        print(f"{meta.name}: {list(value.shape)} {value.dtype}")
    print(f"median {np.median(times):.3f} ms over {runs} runs on {', '.join(session.get_providers())}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("context", type=Path, help="<model>.<precision>.ctx.onnx")
    parser.add_argument("--feeds", type=Path, help=".npz with one array per input name (default: random ones)")
    parser.add_argument("--fallback", type=Path, help="plain ONNX to run with the other providers when the "
                                                      "TensorRT-RTX provider or a GPU is absent")
    parser.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    args = parser.parse_args(argv)
    try:
        model, notes = read_context(args.context)
        feeds = make_feeds(model, notes, args.feeds)
    except (OSError, ValueError, DecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        register_python_plugins(notes)
        session = open_session(args.context, notes)
    except Unavailable as e:
        if args.fallback is None:
            print(f"cannot run {args.context.name}: {e}", file=sys.stderr)
            return 3
        providers = [p for p in ort.get_available_providers() if p != EP]
        print(f"{e}; running {args.fallback.name} on {', '.join(providers)} instead", file=sys.stderr)
        try:
            session = ort.InferenceSession(str(args.fallback), providers=providers)
        except Exception as err:  # ONNX Runtime raises its own types
            print(f"cannot run {args.fallback.name} either: {str(err).strip().splitlines()[0]}", file=sys.stderr)
            return 3
    run(session, feeds, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
