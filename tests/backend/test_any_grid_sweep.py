"""Any grid: one exported graph per model (fp32 and fp16) takes every grid, from the smallest to 48x32 and
non-square, and equals PyTorch there on real ViT tokens of real photographs at that grid; a grid a family cannot
take is refused in one line. One checkpoint per architecture of the zoo, with its extra graphs (scripts/sweep_grids.py
runs every checkpoint)."""

from pathlib import Path

import pytest
from ntc_export.backend.onnx.export import export_model
from ntc_export.commands.demo import ZOO_DIR, demo_models
from ntc_export.evaluate.grid_sweep import SWEEP_GRIDS, sweep_graph
from ntc_export.models import load

ZOO = demo_models(sorted(Path(ZOO_DIR).glob("*.pt")))


@pytest.mark.parametrize("checkpoint", ZOO, ids=[p.stem for p in ZOO])
def test_every_grid_in_onnx_runtime_matches_pytorch(checkpoint, tmp_path):
    module = load(checkpoint).eval()
    graphs = {checkpoint.stem: module, **{f"{checkpoint.stem}.{k}": g.eval() for k, g in module.extra_graphs().items()}}
    for name, graph in graphs.items():
        paths = export_model(graph, tmp_path, ("fp32", "fp16"), name=name)
        rows = sweep_graph(name, graph, paths)
        run = [r for r in rows if "refused" not in r]
        assert {tuple(r["grid_asked"]) for r in run} == set(SWEEP_GRIDS), name
        failed = [(r["grid"], r["precision"], r["output"], r.get("rel_l2"), r.get("cosine")) for r in run
                  if not r["pass"]]
        assert not failed, (name, failed)
        for r in rows:
            if "refused" in r:  # the family's own constraint, in one line
                assert "\n" not in r["refused"] and "grid" in r["refused"], r
