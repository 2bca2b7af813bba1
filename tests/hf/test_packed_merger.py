"""Converted Qwen mergers take what Qwen's vision towers hand their mergers: a request's images packed as rows
[Σ h·w, D] in processor order, here a 1280x720 and a 720x1280 image on the grids the processor's own smart_resize
gives at its default pixel budgets. The converted checkpoint's extra graph "packed", in PyTorch and in ONNX Runtime
(one export, row count dynamic), equals transformers' own merger modules holding the same weights (rel L2 <= 1e-5;
Qwen2.5-VL's through its tower's window permutation and back), and equals our grid graph image by image. Odd grids
are one-line errors, before any work."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from ntc_export.backend.onnx.export import to_onnx_fp32
from ntc_export.cli import main
from ntc_export.data.tokens import TokenSet
from ntc_export.evaluate.fidelity import fidelity
from ntc_export.hf import merge_order
from ntc_export.models import load, read_meta
from ntc_export.util.errors import NtcError

TOLERANCE = 1e-5
IMAGES = ((720, 1280), (1280, 720))  # (height, width): a 1280x720 picture and a 720x1280 one
BUDGET = dict(factor=28, min_pixels=56 * 56, max_pixels=28 * 28 * 1280)  # the Qwen2-VL / Qwen2.5-VL processor's
PATCH = 14
CONTEXT, DIM = 64, 32  # the vision width the merger reads, the LLM width it writes


@pytest.fixture(scope="module")
def processor(transformers):
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    proc = Qwen2VLImageProcessorPil()
    assert (proc.size.shortest_edge, proc.size.longest_edge) == (BUDGET["min_pixels"], BUDGET["max_pixels"])
    assert proc.patch_size * proc.merge_size == BUDGET["factor"]
    return proc


@pytest.fixture(scope="module")
def grids(processor):
    """(h, w) patches of each image: transformers' smart_resize at the default budgets, which the processor reports
    as its image_grid_thw for pictures of those sizes."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    grids = [tuple(s // PATCH for s in smart_resize(h, w, **BUDGET)) for h, w in IMAGES]
    thw = processor(images=[np.zeros((h, w, 3), np.uint8) for h, w in IMAGES], return_tensors="np")["image_grid_thw"]
    assert thw.tolist() == [[1, h, w] for h, w in grids]
    assert grids == [(52, 92), (92, 52)]  # 728 x 1288 px: 720 and 1280 rounded to multiples of 28, under the budget
    return grids


def test_processor_emits_merge_order(processor, grids):
    """The processor's own patchify on a picture whose pixels hold their patch's (row, col): its rows come in
    merge_order, the order the packed graph documents."""
    h, w = grids[0]
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    picture = np.stack([rows, cols, np.zeros_like(rows)], -1).repeat(PATCH, 0).repeat(PATCH, 1).astype(np.float32)
    out = processor(images=[picture], do_resize=False, do_rescale=False, do_normalize=False, return_tensors="np")
    patches = out["pixel_values"].reshape(h * w, 3, -1)  # [rows, channel, temporal x patch pixels]
    assert (patches.min(-1) == patches.max(-1)).all()  # each row one patch, whole
    assert np.array_equal(patches[:, 0, 0] * w + patches[:, 1, 0], merge_order(h, w))


@torch.no_grad()
def _randomize(module, seed: int):
    """Random weights (norm scales near 1, biases nonzero), so a swapped or misnamed tensor shows."""
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        r = torch.randn(p.shape, generator=g)
        p.copy_(r / p.shape[1] ** 0.5 if p.ndim == 2 else 1 + 0.2 * r if name.endswith("weight") else 0.2 * r)
    return module.eval()


def _mergers(family):
    """(config.json, {part: (transformers' merger module, its checkpoint prefix)}) with small dims."""
    if family == "qwen2_vl":
        from transformers.models.qwen2_vl.modeling_qwen2_vl import PatchMerger

        return ({"model_type": family, "vision_config": {"embed_dim": CONTEXT, "hidden_size": DIM}},
                {"": (PatchMerger(dim=DIM, context_dim=CONTEXT), "visual.merger.")})
    if family == "qwen2_5_vl":
        from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLPatchMerger

        return ({"model_type": family, "vision_config": {"hidden_size": CONTEXT, "out_hidden_size": DIM}},
                {"": (Qwen2_5_VLPatchMerger(dim=DIM, context_dim=CONTEXT), "visual.merger.")})
    from transformers.models.qwen3_vl.configuration_qwen3_vl import Qwen3VLVisionConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionPatchMerger

    vision = dict(hidden_size=CONTEXT, out_hidden_size=DIM, deepstack_visual_indexes=[1])
    config = Qwen3VLVisionConfig(**vision)
    return ({"model_type": family, "vision_config": vision},
            {"": (Qwen3VLVisionPatchMerger(config), "model.visual.merger."),
             "deepstack0": (Qwen3VLVisionPatchMerger(config, use_postshuffle_norm=True),
                            "model.visual.deepstack_merger_list.0.")})


def converted(family, folder):
    """transformers' mergers with random weights saved as a checkpoint folder (the tensor names transformers saves),
    converted with `ntc-export convert-hf`: {part: (transformers' module, our checkpoint path)}."""
    from safetensors.torch import save_file

    config, parts = _mergers(family)
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    tensors = {prefix + k: v.contiguous() for i, (module, prefix) in enumerate(parts.values())
               for k, v in _randomize(module, i).state_dict().items()}
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    out = folder.parent / f"{family}.pt"
    assert main(["convert-hf", str(folder), "--out", str(out)]) == 0
    return {name: (module, out.with_name(f"{out.stem}.{name}.pt") if name else out)
            for name, (module, _) in parts.items()}


@torch.no_grad()
def reference(family, merger, rows: np.ndarray, grids) -> np.ndarray:
    """transformers' merger step on packed rows: Qwen2.5-VL's tower hands the merger the 4-row groups in its attention
    windows' order and un-permutes the merged rows (`reverse_indices`); the others call the merger on the rows."""
    x = torch.from_numpy(rows)
    if family != "qwen2_5_vl":
        return merger(x).numpy()
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.vision_utils import get_vision_window_index

    vision = Qwen2_5_VLVisionConfig()
    index, _ = get_vision_window_index(torch.tensor([[1, h, w] for h, w in grids]), vision.spatial_merge_size,
                                       vision.window_size, vision.patch_size)
    assert not torch.equal(index, torch.arange(len(index)))  # the window order really differs
    windowed = x.reshape(len(index), 4, -1)[index].reshape(x.shape)  # the tower's permute_input_for_window_attn
    return merger(windowed)[torch.argsort(index)].numpy()


def _rel(ref, got) -> float:
    assert ref.shape == got.shape
    return fidelity(ref, got)["rel_l2"]


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen2_vl", "qwen3_vl"])
def test_packed_graph_matches_transformers(family, grids, tmp_path, capsys):
    rows = np.random.default_rng(0).standard_normal((sum(h * w for h, w in grids), CONTEXT), dtype=np.float32)
    for name, (merger, path) in converted(family, tmp_path / family).items():
        assert read_meta(path)["model_type"] == family
        ours = load(path)
        graph = ours.extra_graphs()["packed"]
        ref = reference(family, merger, rows, grids)
        assert ref.shape == (len(rows) // 4, DIM) and np.linalg.norm(ref) > 0.1 * ref.size ** 0.5
        with torch.no_grad():
            torch_out = graph(torch.from_numpy(rows)).numpy()
        model = to_onnx_fp32(graph)
        row_axis = model.graph.input[0].type.tensor_type.shape.dim[0]
        assert row_axis.dim_param and not row_axis.HasField("dim_value")  # T is dynamic
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        ort_out = session.run(None, {"tokens": rows})[0]
        torch_rel, ort_rel = _rel(ref, torch_out), _rel(ref, ort_out)
        with capsys.disabled():
            print(f"\n{family} {name or 'main'} packed {list(rows.shape)} -> {list(ref.shape)}: rel L2 torch "
                  f"{torch_rel:.2e}, onnxruntime {ort_rel:.2e}")
        assert torch_rel <= TOLERANCE and ort_rel <= TOLERANCE
        first = grids[0][0] * grids[0][1]  # the same file at other row counts: one image, one merge window
        assert _rel(ref[:first // 4], session.run(None, {"tokens": rows[:first]})[0]) <= TOLERANCE
        assert _rel(ref[:1], session.run(None, {"tokens": rows[:4]})[0]) <= TOLERANCE
        start = 0
        for h, w in grids:  # each image's rows back on its grid: our grid form gives the same merged rows
            grid = rows[start:start + h * w][np.argsort(merge_order(h, w))].reshape(1, h, w, CONTEXT)
            with torch.no_grad():
                assert _rel(ref[start // 4:(start + h * w) // 4], ours(torch.from_numpy(grid))[0].numpy()) <= TOLERANCE
            assert np.array_equal(graph.prepare_inputs(grid)["tokens"], rows[start:start + h * w])
            start += h * w


def test_odd_grids_are_one_line_errors(transformers, tmp_path, capsys):
    (_, path), = converted("qwen2_5_vl", tmp_path / "qwen2_5_vl").values()
    ours = load(path)
    graph = ours.extra_graphs()["packed"]
    odd = np.random.default_rng(0).standard_normal((2, 7, 5, CONTEXT), dtype=np.float32)
    for call in (lambda: ours(torch.from_numpy(odd)), lambda: graph.prepare_inputs(odd),
                 lambda: graph.example_inputs(1, (7, 5))):
        with pytest.raises(NtcError, match=r"even grid sides .*got a 7x5 grid") as e:
            call()
        assert "\n" not in str(e.value)
    with pytest.raises(NtcError, match=r"packed rows \[T, 64\] .* multiple of 4.*got \[6, 64\]") as e:
        graph(torch.zeros(6, CONTEXT))
    assert "\n" not in str(e.value)

    data = tmp_path / "odd.npz"
    TokenSet(np.concatenate([odd[:, :1, 0], odd.reshape(2, 35, CONTEXT)], 1), (7, 5)).save(data)
    capsys.readouterr()
    out = tmp_path / "validate"
    assert main(["validate", str(path), "--data", str(data), "--precision", "fp32", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "grid" in err
    assert not out.exists() or not any(out.rglob("*.onnx"))  # refused before any export
