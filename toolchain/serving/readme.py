"""README.md of a model repository: what is in it and the two launch lines (CPU twin here, GPU in NGC's container)."""

from pathlib import Path

PLUGIN_LIB = "libntc_trt_plugins.so"


def _model_rows(index: dict) -> list[str]:
    rows = ["| model | kind | version | plans (target: file) |", "|---|---|---|---|"]
    for name, m in sorted(index["models"].items()):
        if "plans" in m:
            kind = f"{m['precision']} plan + CPU twin"
            plans = ", ".join(f"{p['target']} (sm_{p['sm']}): {p['file']}" for p in m["plans"])
        elif "ensemble" in m:
            kind, plans = "ensemble: " + " → ".join(m["ensemble"]), ""
        elif m.get("host_step") == "tokens_to_grid":
            kind, plans = "decoded tokens → their payload's grid (Python, host)", ""
        else:
            decoded = " + ".join(m.get("outputs") or ["decoder inputs", "grid"])
            kind, plans = f"{m.get('family', 'compressor')} payload → {decoded} (Python, host)", ""
        rows.append(f"| {name} | {kind} | {m['version']} | {plans} |")
    return rows


def render(index: dict, repo: Path) -> str:
    plugins = sorted({op for m in index["models"].values() for op in m.get("plugins", [])})
    lib = index.get("plugin_lib") or f"/path/to/{PLUGIN_LIB}"
    lines = [
        "# Triton model repository (ntc-export)", "",
        f"Written by `ntc-export triton {index['build_dir']} --out {repo}` from the build's engines/manifest.json.",
        "", *_model_rows(index), "",
        "Each plan model has `config.pbtxt` (platform `tensorrt_plan`, one plan per compute capability in "
        "`cc_model_filenames`, dynamic batching, one GPU instance group per optimization profile) and "
        "`configs/cpu.pbtxt`, its CPU twin: the Python backend running the plan's ONNX (`model.onnx`) with ONNX "
        "Runtime and ntc-export's CPU custom ops, with the same inputs, outputs and batching.",
        "",
        "## Launch on a CPU (the twins)", "",
        "In a Python 3.11 environment with ntc-export, `pip install --no-deps nvidia-pytriton==0.7.0` (its "
        "tritonserver 2.51) and Debian's `libpython3.11`:", "",
        "```bash", f"python -m ntc_export.serving.tritonserver {repo} --http-port 8000 --grpc-port 8001", "```", "",
        "(it runs `tritonserver --model-repository=... --model-config-name=cpu` with the wheel's libraries; "
        "`--print-command` shows the full line).", "",
        "## Launch on a GPU (NGC container)", "",
        "Use the `nvcr.io/nvidia/tritonserver:<yy.mm>-py3` release whose TensorRT matches the engines' "
        "(`plans[].backend_version` in repository.json); the Python steps of the ensembles need "
        "`pip install ntc-export` inside the container.", "",
        "```bash",
        f"docker run --gpus all --rm --net host -v {repo}:/models -v {Path(lib).parent}:/plugins "
        "-e NTC_TRT_REGISTER_ON_LOAD=1 nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver "
        f"--model-repository=/models --backend-config=tensorrt,plugins=/plugins/{Path(lib).name}",
        "```", "",
        f"Engines with ntc:: plugin layers ({', '.join(plugins) or 'none here'}) need `{PLUGIN_LIB}`, built against "
        "the container's TensorRT headers. Triton's TensorRT backend only dlopens each library named in `plugins=` "
        f"(older servers: `-e LD_PRELOAD=/plugins/{Path(lib).name}` instead) and never calls `getCreators`; with "
        "`NTC_TRT_REGISTER_ON_LOAD=1` the library registers its creators at load time with `getPluginRegistry()` of "
        "`libnvinfer.so.<major>` (without it, loading registers nothing: TensorRT's `loadLibrary` calls "
        "`getCreators` itself).", "",
        "TensorRT-RTX plans (targets rtx-*, gb10) deserialize only with a TensorRT-RTX runtime of the same version; "
        "the container's TensorRT backend links TensorRT, so serve those through a TensorRT backend built against "
        "TensorRT-RTX, and plans built with TensorRT (the Jetson/datacenter deploy bundles' `build_engine.py`, run in "
        "the container) with the stock one. Not run here: this repository was written on a machine without a GPU.",
    ]
    if any("ensemble" in m for m in index["models"].values()):
        lines += ["", "## Payloads in, embeddings out", "",
                  "An ensemble takes `payload` UINT8 [N, L]: one `ntc-export compress` payload per row, every image "
                  "of a request on one token grid, rows zero-padded to the longest (range-coded payloads differ in "
                  "length). It returns `tokens` [N, h, w, D] (the decoded tokens on the payloads' grid) and "
                  "`embeddings` (the projector's output); ask for either or both. A payload that is not one, was "
                  "written by another model or is cut short gets the payload step's one-line reason as the error "
                  "(`in ensemble '<name>', payload 0: ...`)."]
    int8 = {n: m["int8_interface"] for n, m in sorted(index["models"].items()) if m.get("int8_interface")}
    if int8:  # token reducers' int8 graphs: int8 token streams at the interface (backend/onnx/int8_io.py)
        lines += ["", "## int8 token interfaces", "",
                  "These models take and return int8 tokens: a client sends round(x / scale) clipped to [-128, 127] "
                  "and reads q * scale (zero point 0; scales also in repository.json and the ONNX metadata "
                  "`ntc.int8_interface`):", "",
                  *(f"- {n}: " + ", ".join(f"`{t}` scale {s:.6g}" for t, s in scales.items())
                    for n, scales in int8.items())]
    if index.get("skipped"):
        lines += ["", "## Not in this repository", "", *(f"- {s}" for s in index["skipped"])]
    return "\n".join(lines) + "\n"
