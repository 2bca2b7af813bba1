"""Build executors: independent (model, target, precision) engine builds run one by one, on a local process pool, or
as Ray tasks on a cluster; either way engines, build logs and manifest entries land in one output directory.

`local` (default): `jobs` worker processes (forked from a fork server that imported the builder once).
`ray`: one task per build, asking for the target's compute capability as a custom resource (`sm_86: 1`), so a
cluster routes builds to the nodes that advertise it; the ONNX travels with the task and the engine comes back.
"""

import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

from ..backend.trt.profiles import DEFAULT_BATCH, DEFAULT_GRID
from ..backend.trt.targets import get_target
from ..util.atomic import write_bytes
from ..util.errors import NtcError

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class BuildJob:
    """One engine build: build_engine's arguments other than the output directory."""

    onnx: str
    target: str
    precision: str
    profiles: dict | None = None
    plugin_lib: str | None = None
    batch: tuple = DEFAULT_BATCH
    grid: tuple = DEFAULT_GRID
    name: str | None = None
    provenance: dict | None = None

    def build(self, out_dir) -> dict:
        from ..backend.trt.build import build_engine

        return build_engine(self.onnx, self.target, self.precision, out_dir, profiles=self.profiles,
                            plugin_lib=self.plugin_lib, batch=self.batch, grid=self.grid, name=self.name,
                            provenance=self.provenance)

    def cached(self, out_dir) -> dict | None:
        from ..backend.trt.build import cached_build

        return cached_build(self.onnx, self.target, self.precision, out_dir, profiles=self.profiles,
                            plugin_lib=self.plugin_lib, batch=self.batch, grid=self.grid, name=self.name)


def _build_in_worker(job: BuildJob, out_dir: str) -> dict:
    return job.build(out_dir)


def _run_local(jobs: list[BuildJob], out_dir, workers: int) -> list[dict]:
    if workers <= 1 or len(jobs) <= 1:
        return [job.build(out_dir) for job in jobs]
    # Workers fork from a server process that imported the builder once: no per-worker import, and none of the
    # parent's torch threads or locks (a plain fork of the parent could inherit a held lock).
    context = get_context("forkserver")
    context.set_forkserver_preload(["ntc_export.backend.trt.build"])
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
        return list(pool.map(_build_in_worker, jobs, [str(out_dir)] * len(jobs)))


def _ray_task(job: dict, files: dict[str, bytes]) -> dict:
    """Runs on a Ray worker: build in a scratch folder from the shipped ONNX (and plugin library), return the
    manifest entry, engine and build log."""
    with tempfile.TemporaryDirectory(prefix="ntc-ray-build-") as tmp:
        local = {}
        for field, data in files.items():
            path = Path(tmp) / field / Path(job[field]).name
            path.parent.mkdir()
            path.write_bytes(data)
            local[field] = str(path)
        entry = BuildJob(**{**job, **local}).build(Path(tmp) / "out")
        engines = Path(tmp) / "out" / "engines"
        return {"entry": entry, "engine": (engines / entry["engine"]).read_bytes(),
                "log": (engines / entry["build_log"]).read_bytes(), "host": os.uname().nodename}


def _gather(job: BuildJob, result: dict, out_dir) -> dict:
    """Write a Ray build's engine and log under `out_dir` and record its manifest entry with the driver's paths."""
    from ..backend.trt.manifest import update_manifest

    engines = Path(out_dir) / "engines"
    entry = {k: v for k, v in result["entry"].items() if k not in ("cache", "engine_path")}
    entry.update(onnx=str(Path(job.onnx).resolve()), built_on=result["host"])
    write_bytes(engines / entry["engine"], result["engine"])
    write_bytes(engines / entry["build_log"], result["log"])
    update_manifest(out_dir, entry)
    return {**entry, "cache": "miss", "engine_path": str(engines / entry["engine"])}


def _ray_connect(address: str | None, jobs: list[BuildJob], workers: int):
    """Connect to the cluster at `address`, or start a local one whose node offers every target's resource."""
    try:
        import ray
    except ImportError:
        raise NtcError("--executor ray needs Ray: pip install 'ntc-export[ray]'") from None
    wanted = sorted({f"sm_{get_target(j.target).sm}" for j in jobs})
    if address:
        ray.init(address=address, log_to_driver=False)
        missing = [r for r in wanted if ray.cluster_resources().get(r, 0) < 1]
        if missing:
            ray.shutdown()
            raise NtcError(f"no node of the Ray cluster at {address} offers {', '.join(missing)}: start build nodes "
                           f"with ray start --resources='{{\"{missing[0]}\": 2}}'")
    else:
        ray.init(num_cpus=workers, resources={r: workers for r in wanted}, include_dashboard=False,
                 log_to_driver=False)
    return ray


def _shipped_files(job: BuildJob) -> dict[str, bytes]:
    """The files a Ray task needs, by BuildJob field: the ONNX (weights inside it) and the plugin library."""
    import onnx

    graph = onnx.load(job.onnx, load_external_data=False).graph
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer):
        raise NtcError(f"{job.onnx}: ONNX with external weights cannot be shipped to Ray workers yet; build locally")
    files = {"onnx": Path(job.onnx).read_bytes()}
    if job.plugin_lib:
        files["plugin_lib"] = Path(job.plugin_lib).read_bytes()
    return files


def _run_ray(jobs: list[BuildJob], out_dir, workers: int, address: str | None) -> list[dict]:
    results: list[dict | None] = [job.cached(out_dir) for job in jobs]  # cache hits never leave the driver
    todo = [i for i, r in enumerate(results) if r is None]
    if not todo:
        return results
    ray = _ray_connect(address, [jobs[i] for i in todo], max(1, workers))
    try:
        task = ray.remote(_ray_task)
        refs = {i: task.options(num_cpus=1, resources={f"sm_{get_target(jobs[i].target).sm}": 1},
                                max_retries=0).remote(asdict(jobs[i]), _shipped_files(jobs[i])) for i in todo}
        for i, ref in refs.items():
            try:
                results[i] = _gather(jobs[i], ray.get(ref), out_dir)
            except ray.exceptions.RayTaskError as e:  # our one-line errors stay one line
                if isinstance(e.cause, NtcError):
                    raise NtcError(str(e.cause)) from None
                raise
    finally:
        ray.shutdown()
    return results


def run_builds(jobs: list[BuildJob], out_dir, executor: str = "local", workers: int = 1,
               ray_address: str | None = None) -> list[dict]:
    """build_engine's result for each job, in job order, all under `out_dir`."""
    if executor not in EXECUTORS:
        raise NtcError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if workers < 1:
        raise NtcError(f"--jobs must be at least 1, got {workers}")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if executor == "ray":
        return _run_ray(jobs, out_dir, workers, ray_address)
    return _run_local(jobs, out_dir, workers)
