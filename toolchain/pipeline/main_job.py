"""The main job: tokens -> export (per attention lowering) -> calibrate -> validate -> build engines -> report,
as cached stages under one output directory."""

import hashlib
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from ..backend.onnx.export import PRECISIONS as EXPORT_PRECISIONS
from ..backend.onnx.export import export_model
from ..backend.trt.profiles import (DEFAULT_BATCH, DEFAULT_GRID, admits, check_grid_sides, covering, format_grid,
                                     grid_triple)
from ..calibration.data import MIN_SAMPLES as MIN_CALIB_SAMPLES
from ..calibration.weight_only import WEIGHT_ONLY
from ..evaluate.feeds import largest_group
from ..data.tokens import load_data, model_fields
from ..evaluate.validate import check_tokens_fit, failures, golden_outputs, model_feeds, validate_onnx
from ..hf import main_job_checkpoints
from ..models import load
from ..models.base import input_profiles
from ..report.paths import portable_command, portable_source
from ..report.summary import write_reports
from ..util.atomic import write_json
from ..util.errors import NtcError
from ..util.hashing import sha256_file, sha256_json, tool_versions
from .stages import Pipeline

QUANTIZED = ("int8", "fp8", *WEIGHT_ONLY)  # int4/nvfp4: weight-only (AWQ), fp16 activations
# Every report shows quantized rows: int8/fp8 come by default, calibrated on the photo corpus's calibration split.
DEFAULT_PRECISIONS = ("fp32", "fp16", "int8", "fp8")
ENGINE_PRECISIONS = ("fp16", "bf16", "int8", "fp8", "int4", "nvfp4")  # fp32 stays the reference export
PCA_SERIES = "pca (reference)"  # the linear reference line on the rate-distortion chart
QUANT_SERIES = "token quantization (reference)"
MAIN_JOB_ROUTES = ("avif:30", "avif:50", "avif:70", "jpeg:95")  # picture routes the report reads codecs against


COUNTED_LOWERINGS = ("decomposed", "native")  # attention lowerings whose graphs onnx-tool counts, preferred first
COST_BATCHES = (1,)  # the report ranks routes by their bounds; rd times batch 16 too


def cost_of(codec, tokens, exported: dict | None = None) -> dict:
    from ..evaluate import route_costs

    return route_costs.codec_cost(codec, tokens, COST_BATCHES, exported)


def rate_point(row: dict, series: str, target: str, cost: dict | None) -> dict:
    """A rate-distortion row as a report point: what was measured, on what, and its decode cost."""
    return {"model": row["model"], "series": series, "family": row["family"], "arch": row.get("arch"),
            "precision": "fp32", "target": target, "bytes_per_image": row["bytes_per_image"], "rate": row["rate"],
            "cosine": row["cosine"], "rel_l2": row["rel_l2"], "snr_db": row["snr_db"], "samples": row["samples"],
            "decode_cost": cost}


def token_hash(tokens) -> str:
    """sha256 of a token set's tokens (grid group by grid group, with each group's images and grid when there are
    several) and labels; a set of one grid hashes as it always has."""
    groups = tokens.by_grid()
    h = hashlib.sha256(groups[0][1].tokens.tobytes() if len(groups) == 1 else b"grid groups")
    for idx, ts in groups if len(groups) > 1 else ():
        h.update(np.asarray(idx, np.int64).tobytes() + np.asarray(ts.grid, np.int64).tobytes() + ts.tokens.tobytes())
    if tokens.labels is not None:
        h.update(tokens.labels.tobytes())
    return h.hexdigest()


def check_inputs(module, tokens, source: str) -> None:
    """Before any work: every grid group of `tokens` holds the ViT fields the module reads beside the tokens
    (`token_fields`) and fits the module (width, the family's grid rule)."""
    for _, ts in tokens.by_grid():
        model_fields(module, ts, source)
        check_tokens_fit(module, ts.grid_tokens[:1])


def profile_grid(grid, tokens, source: str) -> tuple:
    """The engine profiles' token grid for validation data `tokens`: `grid` when it admits every grid of the data
    (else a one-line NtcError, before any work); None: the default widened to admit them."""
    data_grids = [ts.grid for _, ts in tokens.by_grid()]
    if grid is None:
        return covering(DEFAULT_GRID, data_grids)
    outside = [g for g in data_grids if not admits(grid, g)]
    if outside:
        raise NtcError(f"{source}: token grid {outside[0][0]}x{outside[0][1]} lies outside --grid "
                       f"{format_grid(grid)}; widen it (e.g. --grid {format_grid(covering(grid, data_grids))})")
    return grid_triple(grid)


def module_profiles(module, grid) -> dict:
    """Every input's min/opt/max shape for engine builds: the model's own profiles where it defines them (a reducer
    raises a grid below its smallest token count), else read off its example inputs."""
    if hasattr(module, "input_profiles"):
        return module.input_profiles(DEFAULT_BATCH, grid)
    return input_profiles(module, DEFAULT_BATCH, grid)


def grids_of(tokens) -> list:
    """The report's grid: [h, w] for one grid, [[h, w, images], ...] for several."""
    groups = tokens.by_grid()
    return list(groups[0][1].grid) if len(groups) == 1 else [[*ts.grid, len(idx)] for idx, ts in groups]


def has_window_attention(module) -> bool:
    from ..models.blocks import WindowAttention

    return any(isinstance(m, WindowAttention) for m in module.modules())


def plan_targets(targets, precisions, explicit: bool):
    """(target, precision) pairs to build and the refused ones with reasons. Pairs the user asked for explicitly
    that a target cannot build are an error before any work; with the default target set they are reported."""
    from ..backend.trt.targets import plan_builds

    todo, refused = plan_builds(targets, [p for p in precisions if p in ENGINE_PRECISIONS])
    if refused and explicit:
        raise NtcError("; ".join(r["reason"] for r in refused) + " — drop those targets or precisions")
    return todo, refused


def _engine_records(name, entry, precision, target) -> list[dict]:
    """Engine validation: executed where a GPU and a matching TensorRT exist, else `executed: false` + why."""
    from ..backend.trt.manifest import ManifestEntry
    from ..backend.trt.runner import TrtRunner

    runner = TrtRunner(entry.get("engine_path") or "", entry)
    ok, reason = runner.can_run() if ManifestEntry.parse(entry).is_engine else (False, entry.get("reason", ""))
    return [{"model": name, "precision": precision, "target": target.name, "backend": target.backend,
             "output": None, "executed": ok, "reason": reason, "artifact": entry.get("engine") or entry.get("bundle"),
             "max_abs": None, "rel_l2": None, "cosine": None, "snr_db": None, "task_metric": None}]


def quantizable(onnx_paths: dict) -> bool:
    """Whether the fp32 graph (first lowering) has weights for Q/DQ (else a token selection's int8 interface)."""
    from ..calibration.interface import has_weight_layers

    return has_weight_layers(next(iter(onnx_paths.values()))["fp32"])


def _calibration_summary(result) -> dict:
    """What the report keeps of a calibration: counts, the layers kept in high precision and, for weight-only
    formats, the weight bytes of the fp16 and the low-bit graph."""
    return {"quantized_layers": len(result.quantized_layers),
            "kept_high_precision": [k["layer"] for k in result.kept_high_precision],
            **({"weight_bytes": result.weight_bytes} if result.weight_bytes else {})}


def validated_graph(precision: str, path: Path) -> Path:
    """The graph ONNX Runtime validates for a precision's ONNX: nvfp4's reference form (numpy-dequantized
    weights; ONNX Runtime has no FLOAT4E2M1 kernel), the graph itself otherwise."""
    return path.with_name(f"model.{precision}.reference.onnx") if precision == "nvfp4" else path


class MainJob:
    """One run of the main job over several models (see `run_main_job`)."""

    def __init__(self, out_dir: Path, precisions, targets, explicit_targets: bool, attention: str | None,
                 calib_method: str, quiet: bool, target_cosine: float | None = None, exporter: str = "dynamo",
                 int4_block: int | None = None):
        self.out_dir = Path(out_dir).resolve()
        self.console = Console(stderr=True, quiet=quiet)
        self.pipe = Pipeline(self.out_dir, console=self.console, quiet=quiet)
        self.precisions = list(precisions)
        self.attention = attention
        self.exporter = exporter
        self.calib_method = calib_method
        self.target_cosine = target_cosine
        self.int4_block = int4_block
        self.calibrated_graphs: list[dict] = []  # per calibrated graph: the layers kept in high precision
        self.not_quantized: list[dict] = []  # int8/fp8 of models without weights: reported, not built
        self.versions = tool_versions()
        self.todo, self.refused = plan_targets(targets, self.precisions, explicit_targets)
        self.model_hashes: dict[str, str] = {}
        self.pca_bases: dict[str, tuple] = {}  # fit-data hash -> (mean, directions)

    def lowerings(self, module) -> list[str]:
        """Attention lowerings to export: the validation one plus each target's (one graph without attention)."""
        if not has_window_attention(module):
            return ["decomposed"]
        if self.attention:
            return [self.attention]
        # What ships is what gets validated: each target's lowering (decomposed when nothing is built).
        return sorted({t.attention for t, _ in self.todo}) or ["decomposed"]

    def export(self, name, path, module, model_hash) -> dict[str, dict[str, Path]]:
        """lowering -> precision -> ONNX path."""
        precisions = [p for p in self.precisions if p in EXPORT_PRECISIONS] or ["fp32"]
        if "fp32" not in precisions and any(p in QUANTIZED for p in self.precisions):
            precisions = ["fp32", *precisions]
        out = {}
        for lowering in self.lowerings(module):
            onnx_dir = self.out_dir / name / "onnx" / lowering
            result = self.pipe.stage(
                f"{name}/export/{lowering}",
                {"model": model_hash, "precisions": precisions, "attention": lowering, "exporter": self.exporter,
                 "versions": self.versions},
                lambda: {p: str(f.relative_to(self.out_dir)) for p, f in
                         export_model(module, onnx_dir, precisions, attention=lowering,
                                       exporter=self.exporter).items()},
                outputs=lambda r: list(r.values()))
            out[lowering] = {p: self.out_dir / f for p, f in result.items()}
        return out

    def calibrate(self, name, module, onnx_paths, calib, calib_hash) -> None:
        """Add Q/DQ models (int8/fp8) to each lowering's ONNX set, calibrated on the model's own feeds."""
        from ..calibration.api import calibrate

        feeds = model_feeds(module, calib)  # per grid: tokens (+ the ViT's attention, keys), or BC blocks
        if not quantizable(onnx_paths):
            self.calibrate_interface(name, module, onnx_paths, feeds, calib_hash)
            return
        for precision in (p for p in self.precisions if p in QUANTIZED):
            for lowering, paths in onnx_paths.items():
                out_dir = self.out_dir / name / "onnx" / lowering
                fp32 = paths["fp32"]
                block = {"int4_block": self.int4_block} if precision == "int4" else {}
                result = self.pipe.stage(
                    f"{name}/calibrate/{lowering}/{precision}",
                    {"onnx": sha256_file(fp32), "data": calib_hash, "method": self.calib_method,
                     "target_cosine": self.target_cosine, "versions": self.versions, **block},
                    lambda: _calibration_summary(calibrate(fp32, feeds, precision, self.calib_method, out_dir,
                                                           target_cosine=self.target_cosine, log=lambda text: None,
                                                           block_size=self.int4_block)),
                    outputs=[out_dir / f"model.{precision}.onnx"]
                    + ([validated_graph(precision, out_dir / f"model.{precision}.onnx")] if precision == "nvfp4"
                       else []))
                paths[precision] = out_dir / f"model.{precision}.onnx"
                self.calibrated_graphs.append({"model": name, "lowering": lowering, "precision": precision,
                                         "method": "awq" if precision in WEIGHT_ONLY else self.calib_method,
                                         "target_cosine": self.target_cosine, **result})

    def calibrate_interface(self, name, module, onnx_paths, feeds, calib_hash) -> None:
        """int8 of a graph without weights (a token selection): int8 token streams at its interface, fp32 inside
        (calibration/interface.py); fp8, and models without token streams, are reported as not quantized."""
        from ..calibration.interface import calibrate_interface

        streams = getattr(module, "int8_streams", ())
        for precision in (p for p in self.precisions if p in QUANTIZED):
            if precision != "int8" or not streams:
                self.not_quantized.append({"target": "any target", "precision": precision, "reason": (
                    f"{name}: nothing to quantize (no MatMul/Gemm/Conv with constant weights)" + (
                        f"; its int8 graph carries int8 tokens at the interface, an {precision} one is not made"
                        if streams
                        else "; its fp32 and fp16 graphs are the deployment"))})
                continue
            for lowering, paths in onnx_paths.items():
                out_dir = self.out_dir / name / "onnx" / lowering
                result = self.pipe.stage(
                    f"{name}/calibrate/{lowering}/int8", {"onnx": sha256_file(paths["fp32"]), "data": calib_hash,
                                                          "streams": list(streams), "versions": self.versions},
                    lambda: calibrate_interface(paths["fp32"], feeds, streams, out_dir),
                    outputs=[out_dir / "model.int8.onnx"])
                paths["int8"] = out_dir / "model.int8.onnx"
                self.calibrated_graphs.append({"model": name, "lowering": lowering, "precision": "int8",
                                               "method": "max (int8 interface)", "target_cosine": None,
                                               "quantized_layers": 0, "kept_high_precision": [],
                                               "int8_interface": result["scales"],
                                               "fidelity_on_calibration": result["fidelity"]})

    def validate(self, name, module, onnx_paths, tokens, feeds, data_hash) -> list[dict]:
        records = []
        golden = {}
        for lowering, paths in onnx_paths.items():
            def run():
                if not golden:  # one golden run serves every lowering
                    golden.update(golden_outputs(module, feeds))
                return validate_onnx(name, module, {p: validated_graph(p, f) for p, f in paths.items()}, tokens,
                                     tokens.labels, golden=golden, feeds=feeds)

            rows = self.pipe.stage(
                f"{name}/validate/{lowering}",
                {"onnx": {p: sha256_file(f) for p, f in paths.items()}, "data": data_hash, "versions": self.versions,
                 "golden": module.config.get("golden_sha256")},  # an ONNX file's --golden outputs
                run)
            records += [{**r, "lowering": lowering} for r in rows]
        return records

    def measure(self, name, module, onnx_paths, feeds, data_hash) -> dict:
        """ORT CPU latency and per-layer drift of each precision's ONNX (first lowering), on the most numerous grid
        of the data: cached like any stage."""
        from ..evaluate import drift_threshold, layer_drift, measure_latency

        lowering = next(iter(onnx_paths))
        paths = onnx_paths[lowering]
        feeds = largest_group(feeds)

        def run():
            result = {"latency": {}, "drift": {}}
            for precision, path in ((p, validated_graph(p, f)) for p, f in paths.items()):
                result["latency"][precision] = {**measure_latency(path, feeds), "artifact": str(path)}
                # no layers to compare in an ONNX file, nor in a module without submodules (the reducers); a
                # torch.export program's layers are in its program
                layered = any(module.children()) or hasattr(module, "program")
                result["drift"][precision] = [] if hasattr(module, "onnx_path") or not layered \
                    else layer_drift(module, path, feeds, threshold=drift_threshold(precision))
            return result

        return self.pipe.stage(f"{name}/measure/{lowering}",
                               {"onnx": {p: sha256_file(f) for p, f in paths.items()}, "data": data_hash,
                                "versions": self.versions}, run)

    def compression(self, name, module, tokens, data_hash, fit, fit_hash, fp32_onnx: Path | None = None) -> list[dict]:
        """For compressors: bytes per image of real payloads and how close the decoded tokens are to the original
        ones, beside the PCA reference at the same rate (fitted on `fit`, tokens disjoint from the measured ones),
        each with its decode cost (the decoder's graph: the build's own fp32 ONNX, `fp32_onnx`)."""
        import onnx

        from ..evaluate import pca_reference
        from ..evaluate.rate_distortion import measure

        def run():
            row = measure(name, module, tokens, with_saliency=False)
            units = pca_reference.fit_units(fit)
            if fit_hash not in self.pca_bases:  # one PCA fit serves every compressor of the run
                self.pca_bases[fit_hash] = pca_reference.fit_basis(units)
            codec = pca_reference.for_rate(units, row["rate"], self.pca_bases[fit_hash])
            ref = measure(f"pca@{row['rate']:.1f}x", codec, tokens, with_saliency=False)
            exported = {"decoder": onnx.load(str(fp32_onnx))} if fp32_onnx else None
            return [rate_point(row, module.arch, "cpu (PyTorch)", cost_of(module, tokens, exported)),
                    rate_point(ref, PCA_SERIES, "cpu (NumPy)", cost_of(codec, tokens))]

        return self.pipe.stage(f"{name}/compression", {"model": self.model_hashes[name], "data": data_hash,
                                                       "fit": fit_hash, "versions": self.versions}, run)

    pixel_routes: tuple = MAIN_JOB_ROUTES  # picture routes of the reference rows (--pixel-route)

    def references(self, tokens, data_hash, source: str) -> dict:
        """The routes a user could take instead of a token codec, measured once per run on the same tokens: fp8 /
        int8 / int4 token quantization and the pictures coded and re-encoded by the ViT (where the pictures are
        found), each with its decode cost: {"points": [...], "skipped": why pixel rows are missing, or None}."""
        from ..evaluate import pixel_reference, quant_reference, route_costs
        from ..evaluate.rate_distortion import measure, pixel_rows, series_of

        def run():
            points = [rate_point(measure(n, c, tokens, with_saliency=False), QUANT_SERIES, "cpu (NumPy)",
                                 cost_of(c, tokens)) for n, c in quant_reference.reference_codecs().items()]
            routes = pixel_reference.check_routes(self.pixel_routes)
            try:
                pictures = pixel_reference.matched_pictures(tokens) if routes else None
            except NtcError as e:
                return {"points": points, "skipped": f"pixel rows: {e}"}
            rows = pixel_rows(tokens, pictures, routes, with_saliency=False) if routes else []
            costs = route_costs.pixel_costs(rows, tokens, pictures, COST_BATCHES) if rows else []
            points += [rate_point(r, series_of(r), "cpu (Pillow + ViT in ONNX Runtime)", c)
                       for r, c in zip(rows, costs)]
            return {"points": points, "skipped": None}

        return self.pipe.stage("references/compression", {"data": data_hash, "source": source,
                                                          "routes": [r for r in self.pixel_routes],
                                                          "versions": self.versions}, run)

    def extra_graph(self, name, parent, graph, tokens, data_hash) -> tuple[list[dict], list[dict]]:
        """(records, engines) of a graph shipped beside `parent`'s deployable one (`extra_graphs`): exported fp32/fp16,
        validated in ONNX Runtime against PyTorch on the held-out tokens' own feeds, engines built."""
        from ..evaluate import engine_latency

        precisions = [p for p in self.precisions if p in EXPORT_PRECISIONS] or ["fp32"]
        onnx_dir = self.out_dir / name / "onnx" / "decomposed"
        result = self.pipe.stage(
            f"{name}/export", {"model": self.model_hashes[parent], "graph": name, "precisions": precisions,
                               "exporter": self.exporter, "versions": self.versions},
            lambda: {p: str(f.relative_to(self.out_dir)) for p, f in
                     export_model(graph, onnx_dir, precisions, exporter=self.exporter).items()},
            outputs=lambda r: list(r.values()))
        paths = {p: self.out_dir / f for p, f in result.items()}
        feeds = model_feeds(graph, tokens)  # token inputs unless the graph prepares its own
        rows = self.pipe.stage(
            f"{name}/validate", {"onnx": {p: sha256_file(f) for p, f in paths.items()}, "data": data_hash,
                                 "versions": self.versions},
            lambda: validate_onnx(name, graph, paths, tokens, feeds=feeds))
        built, engine_records = self.build(name, graph, {"decomposed": paths})
        engines = [{**e, "latency": engine_latency(self.out_dir, e, largest_group(feeds))} for e in built]
        return [{**r, "lowering": "decomposed"} for r in rows] + engine_records, engines

    executor: tuple | None = None  # (executor, jobs, ray address): a model's engine builds run there together
    grid: tuple = DEFAULT_GRID  # engine profiles' token grid: min, opt, max (h, w) (--grid)
    epcontext: bool = False  # an ONNX Runtime EPContext model beside each RTX engine (--epcontext)

    def prebuild(self, name, module, onnx_paths) -> dict:
        """Every RTX engine of one model built at once by the build executor, when one is set: (target, precision)
        -> build_engine's result."""
        if self.executor is None:
            return {}
        from .executor import BuildJob, run_builds

        profiles = module_profiles(module, self.grid)
        pairs = [(t, p, onnx_paths[t.attention if t.attention in onnx_paths else next(iter(onnx_paths))].get(p))
                 for t, p in self.todo if t.backend == "tensorrt_rtx"]
        pairs = [(t, p, path) for t, p, path in pairs if path is not None]
        jobs = [BuildJob(str(path), t.name, p, profiles=profiles, name=name) for t, p, path in pairs]
        return {(t.name, p): e for (t, p, _), e in zip(pairs, run_builds(jobs, self.out_dir, *self.executor))}

    def build(self, name, module, onnx_paths) -> tuple[list[dict], list[dict]]:
        """Engines for RTX targets, deploy bundles for TensorRT targets; engine records say whether they ran."""
        from ..backend.trt.build import build_engine
        from ..backend.trt.bundle import write_bundle

        entries, records = [], []
        prebuilt = self.prebuild(name, module, onnx_paths)
        for target, precision in self.todo:
            lowering = target.attention if target.attention in onnx_paths else next(iter(onnx_paths))
            onnx_path = onnx_paths[lowering].get(precision)
            if onnx_path is None:
                continue
            start = time.perf_counter()
            stage = f"{name}/build/{target.name}/{precision}"
            profiles = module_profiles(module, self.grid)
            if target.backend == "tensorrt_rtx":
                with self.console.status(f"{stage} ..."):
                    entry = prebuilt.get((target.name, precision)) or build_engine(
                        onnx_path, target, precision, self.out_dir, profiles=profiles, name=name)
                # A build the executor ran before this loop: its own build time, not the lookup's.
                took = entry["build_seconds"] if (target.name, precision) in prebuilt else time.perf_counter() - start
                self.pipe.note(stage, entry.get("cache") == "hit", took, "engine cache hit")
                if self.epcontext:
                    from ..backend.trt.epcontext import write_epcontext

                    entry = {**entry, "epcontext": write_epcontext(entry, self.out_dir)}
            else:
                bundle_dir = self.out_dir / "engines" / target.name / f"{name}.{precision}.bundle"
                entry = self.pipe.stage(
                    stage, {"onnx": sha256_file(onnx_path), "target": target.to_dict(), "precision": precision,
                            "profiles": profiles, "versions": self.versions},
                    lambda: write_bundle(onnx_path, target, precision, self.out_dir, profiles=profiles,
                                         grid=self.grid, name=name),
                    outputs=lambda e: sorted(p for p in bundle_dir.rglob("*") if p.is_file()))
            entries.append(entry)
            records += _engine_records(name, entry, precision, target)
        return entries, records


def default_precisions(modules: dict, calib_data: Path | None) -> tuple[tuple, list[dict]]:
    """The default precisions, and int8/fp8 left out (with why) when the default calibration tokens (ViT
    tokens of the photo corpus) cannot feed a model: it needs its own --calib-data then."""
    from ..data.vit import DIM

    if calib_data is not None:
        return DEFAULT_PRECISIONS, []
    other = sorted(f"{n} ({m.input_dim}-d)" for n, (_, m) in modules.items() if getattr(m, "input_dim", DIM) != DIM)
    if not other:
        return DEFAULT_PRECISIONS, []
    reason = (f"not calibrated: the default calibration tokens are {DIM}-d and {', '.join(other)} take other "
              "tokens; give --calib-data")
    return (tuple(p for p in DEFAULT_PRECISIONS if p not in QUANTIZED),
            [{"target": "any target", "precision": p, "reason": reason} for p in DEFAULT_PRECISIONS if p in QUANTIZED])


def run_main_job(model_paths: list[Path], out_dir: Path, data: Path | None = None, calib_data: Path | None = None,
                 precisions=None, targets=None, attention: str | None = None,
                 calib_method: str = "mse", max_samples: int | None = None, quiet: bool = False,
                 command: str | None = None, target_cosine: float | None = None,
                 max_calib_samples: int | None = None,
                 executor: tuple | None = None, golden: Path | None = None, exporter: str = "dynamo",
                 grid=None, min_cosine: float = 0.99, decode_budget_ms: float | None = None,
                 pixel_routes=None, epcontext: bool = False, int4_block: int | None = None) -> dict:
    """Run every stage for every model (precisions None: DEFAULT_PRECISIONS); returns the report dict (also
    written to OUT/report.json). `grid`: the engine profiles' token grid (min, opt, max (h, w)); None: the default
    widened to admit every grid of the validation data. `min_cosine`, `decode_budget_ms`: the payload decision's
    token-fidelity floor and decode-cost budget (ms on each target, read against its roofline bound);
    `pixel_routes`: the picture routes of the reference rows (None: MAIN_JOB_ROUTES, () none); `epcontext`: write
    an ONNX Runtime EPContext model beside each RTX engine; `int4_block`: int4's block size (default 128)."""
    from ..backend.trt.targets import DEFAULT_TARGETS

    started = time.perf_counter()
    model_paths = [c for p in model_paths for c in main_job_checkpoints(p, out_dir)]  # Hugging Face folders: converted
    modules = {}
    for path in model_paths:
        modules[Path(path).stem] = (Path(path), load(path))  # fail early on a bad checkpoint, before any work
    if len(modules) != len(model_paths):
        raise NtcError("two models share a file name; their outputs would collide")
    if golden is not None:
        from ..models.onnx_file import use_golden

        if len(modules) != 1 or not hasattr(next(iter(modules.values()))[1], "onnx_path"):
            raise NtcError("--golden goes with one ONNX file as MODEL")
        use_golden(next(iter(modules.values()))[1], golden)
    uncalibrated, default = [], precisions is None
    if default:
        precisions, uncalibrated = default_precisions(modules, calib_data)
    explicit = targets is not None and not default  # default precisions a chosen target cannot build: reported
    job = MainJob(out_dir, precisions, DEFAULT_TARGETS if targets is None else targets, explicit, attention,
                  calib_method, quiet, target_cosine, exporter, int4_block)
    job.executor = executor  # (executor, jobs, ray address) for engine builds, or None: one by one
    job.epcontext = epcontext
    if pixel_routes is not None:
        job.pixel_routes = tuple(pixel_routes)
    from ..evaluate.pixel_reference import check_routes

    check_routes(job.pixel_routes)  # a bad route or a Pillow without AVIF: before any work

    # Models that read the ViT's CLS attention / keys beside the tokens (token_fields): the built-in splits load
    # with them, a token file must hold them (checked here, before any work).
    fields = any(getattr(m, "token_fields", ()) for _, m in modules.values())
    tokens, source = load_data(data, "val", attention=fields)
    for _, module in modules.values():
        check_inputs(module, tokens, source)
    if max_samples is not None and len(tokens) > max_samples:
        tokens = tokens.subset(range(max_samples))
        source += f"[:{max_samples}]"
    job.grid = profile_grid(grid, tokens, source)
    for name, (_, module) in modules.items():  # a 2x2 merger's engines cannot be bounded at odd sides
        check_grid_sides(job.grid, getattr(module, "side_multiple", 1), getattr(module, "side_rule", None), name)
    data_hash = token_hash(tokens)
    calib = calib_source = calib_hash = None
    if any(p in QUANTIZED for p in job.precisions):
        calib, calib_source = load_data(calib_data, "calib", attention=fields)
        for _, module in modules.values():
            check_inputs(module, calib, calib_source)
        if max_calib_samples is not None and len(calib) > max_calib_samples:
            # evenly spaced, so every photograph of the split still contributes (its crops are consecutive)
            calib_source += f"[{max_calib_samples} of {len(calib)}, evenly spaced]"
            calib = calib.subset(np.linspace(0, len(calib) - 1, max_calib_samples).round().astype(int))
        calib_hash = token_hash(calib)
        if calib_hash == data_hash:
            raise NtcError("calibration data and validation data are the same tokens: give disjoint sets")
        if len(calib) < MIN_CALIB_SAMPLES:  # refused before any export, not when calibration starts
            raise NtcError(f"calibration data too small: {len(calib)} samples ({calib_source}), need at least "
                           f"{MIN_CALIB_SAMPLES}")

    from ..evaluate import engine_latency
    from ..evaluate.provenance import hashed_files
    from ..report import write_report

    records, engines, latency, drift, compression = [], [], {}, {}, []
    references_skipped = None  # why the pixel reference rows are missing, where they are
    fit = None  # training-side tokens of the PCA reference line, loaded with the first compressor
    job.model_hashes = {name: sha256_file(path) for name, (path, _) in modules.items()}
    for name, (path, module) in modules.items():
        model_hash = job.model_hashes[name]
        onnx_paths = job.export(name, path, module, model_hash)
        if calib is not None:
            job.calibrate(name, module, onnx_paths, calib, calib_hash)
        feeds = model_feeds(module, tokens)
        records += job.validate(name, module, onnx_paths, tokens, feeds, data_hash)
        measured = job.measure(name, module, onnx_paths, feeds, data_hash)
        latency[name], drift[name] = measured["latency"], measured["drift"]
        if module.is_compressor:
            if fit is None:  # the calibration split: disjoint from the validation tokens
                fit = calib if calib is not None else load_data(calib_data, "calib")[0]
            if not compression:  # the routes every codec is read against, once per run
                refs = job.references(tokens, data_hash, source)
                compression += refs["points"]
                references_skipped = refs["skipped"]
            # onnx-tool counts the decomposed and native lowerings (decode_cost registers ONNX Attention); a plugin
            # lowering alone is exported again, decomposed
            fp32 = next((onnx_paths[lw]["fp32"] for lw in COUNTED_LOWERINGS if "fp32" in onnx_paths.get(lw, {})), None)
            compression += job.compression(name, module, tokens, data_hash, fit, token_hash(fit), fp32)
        built, engine_records = job.build(name, module, onnx_paths)
        engines += [{**e, "latency": engine_latency(job.out_dir, e, largest_group(feeds))} for e in built]
        records += engine_records
        for part, graph in module.extra_graphs().items() if hasattr(module, "extra_graphs") else ():
            part_records, part_engines = job.extra_graph(f"{name}.{part}", name, graph, tokens, data_hash)
            records += part_records
            engines += part_engines

    report = {
        "command": command or " ".join(map(shlex.quote, ["ntc-export", *sys.argv[1:]])),
        "data": {"source": source, "sha256": data_hash, "samples": int(len(tokens)), "grid": grids_of(tokens)},
        "calibrated_graphs": job.calibrated_graphs,
        "calibration_data": None if calib is None else {"source": calib_source, "sha256": calib_hash,
                                                        "samples": int(len(calib))},
        "models": {n: {"path": str(p), "sha256": sha256_file(p), "arch": m.arch, "config": m.config}
                   for n, (p, m) in modules.items()},
        "records": records,
        "engines": engines,
        "latency": latency,
        "drift": drift,
        "compression": compression,
        "references_skipped": references_skipped,
        "payload_rule": {"min_cosine": min_cosine, "decode_budget_ms": decode_budget_ms},
        "refused": job.refused + uncalibrated + job.not_quantized,
        "pass": not failures(records),
        "stages": job.pipe.summary(),
        "versions": job.versions,
    }
    write_reports(job.out_dir, report)
    report["hashed_files"] = hashed_files(job.out_dir, report, engines)
    with job.console.status("report ..."):
        write_report(job.out_dir, report)
    manifest = {
        "inputs": {**{n: r["sha256"] for n, r in report["models"].items()}, "data": data_hash,
                   "calibration_data": calib_hash},
        "data_sources": {"validation": portable_source(source, job.out_dir),
                         "calibration": portable_source(calib_source, job.out_dir)},
        "versions": job.versions,
        "stages": report["stages"],
        "stages_run": [s["name"] for s in report["stages"] if s["status"] == "ran"],
        "stages_skipped": [s["name"] for s in report["stages"] if s["status"] == "skipped"],
        "seconds": time.perf_counter() - started,
        "command": portable_command(report["command"], job.out_dir),
        "config_hash": sha256_json({"precisions": job.precisions, "attention": attention,
                                    "targets": [t.name for t, _ in job.todo]}),
    }
    write_json(job.out_dir / "manifest.json", manifest)
    job.console.print(f"report: {job.out_dir / 'report' / 'index.html'}  ({'PASS' if report['pass'] else 'FAIL'}, "
                      f"{len(manifest['stages_run'])} stages run, {len(manifest['stages_skipped'])} skipped)")
    return report

