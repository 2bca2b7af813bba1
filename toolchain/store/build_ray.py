"""The Ray executor of a store build: Ray Data reads the inputs and runs the ViT and the encoder as batched map stages
over the driver's work units (stages.py); rows come back in input order (preserve_order) so the driver writes the
same shards as the local executor. Starts a local Ray instance unless given an address."""

import logging
import pickle

import numpy as np

from ..util.errors import NtcError
from . import stages


def _rows(batch, fn):
    """Apply `fn` to each pickled row of a numpy batch; the results pickled again (rows hold ragged arrays)."""
    out = [pickle.dumps(fn(pickle.loads(bytes(b))), protocol=5) for b in batch["row"]]
    return {"row": np.array(out, dtype=object)}


def _pixels(size: dict):
    return lambda batch: _rows(batch, lambda unit: (unit, stages.pixels(unit, size)))


def _tokens(batch):
    return _rows(batch, lambda row: (row[0], stages.tokens(row[1])))


class _Encode:
    """The encoder stage: one compressor per Ray worker, loaded from the checkpoint (or the pickled module)."""

    def __init__(self, checkpoint, module_bytes):
        if checkpoint:
            from ..models import load

            self.module = load(checkpoint)
        else:
            self.module = pickle.loads(module_bytes)

    def __call__(self, batch):
        return _rows(batch, lambda row: (row[0].shard, stages.payloads(self.module, row[1])))


def _start(jobs, address):
    import ray

    if ray.is_initialized():
        return False
    kwargs = {"address": address} if address else {"num_cpus": jobs or None, "include_dashboard": False}
    try:
        ray.init(ignore_reinit_error=True, log_to_driver=False, configure_logging=False, **kwargs)
    except Exception as e:  # Ray raises many types (ConnectionError, RuntimeError ...); the first line names it
        raise NtcError(f"cannot start or reach Ray{f' at {address}' if address else ''}: "
                       f"{str(e).strip().splitlines()[0][:200]}") from None
    return True


def run(module, checkpoint, units, size: dict, jobs, address):
    """(shard number, payloads in input order) per shard of `units`, in shard order, computed on Ray."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise NtcError("--executor ray needs Ray: pip install 'ray[data]'") from None
    if not units:
        return
    started = _start(jobs, address)
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the driver prints its own progress per shard
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # the driver writes shards in input order
        ctx.enable_progress_bars = False
        ds = ray.data.from_items([{"row": pickle.dumps(u, protocol=5)} for u in units],
                                 override_num_blocks=min(len(units), 4 * (jobs or 2)))
        ds = ds.map_batches(_pixels(size), batch_size=1, batch_format="numpy")
        ds = ds.map_batches(_tokens, batch_size=1, batch_format="numpy")
        workers = jobs or max(1, int(ray.available_resources().get("CPU", 1)))
        ds = ds.map_batches(_Encode, batch_size=1, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=workers),
                            fn_constructor_args=(str(checkpoint) if checkpoint else None,
                                                 None if checkpoint else pickle.dumps(module)))
        current, got = None, []
        for row in ds.iter_rows():
            shard, payloads = pickle.loads(bytes(row["row"]))
            if current is not None and shard != current:
                yield current, got
                got = []
            current = shard
            got += payloads
        if current is not None:
            yield current, got
    finally:
        if started:
            ray.shutdown()
