"""Engine profiles over the token grid (h, w): --grid parsing (bad text is one line, exit 2), the check that a profile
fits the graph's static and dynamic axes before any build, a real TensorRT-RTX AOT build of a zoo model on a
non-square profile with its Triton config (-1 spatial dims) and Jetson bundle (the (h, w) profile carried)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from ntc_export.backend.trt.profiles import (DEFAULT_GRID, check_profiles, format_grid, grid_triple, input_profiles,
                                             parse_grid)
from ntc_export.cli import main
from ntc_export.util.errors import NtcError
from ntc_export.util.paths import ZOO_DIR
from onnx import TensorProto, helper

DIM = 8
NON_SQUARE = "4x4:26x46:48x48"
HAS_RTX = importlib.util.find_spec("tensorrt_rtx_bindings") is not None
needs_rtx = pytest.mark.skipif(not HAS_RTX, reason="tensorrt_rtx (TensorRT-RTX wheel) is not installed")


def _token_graph(path: Path, dims: list) -> Path:
    """tokens `dims` (names: dynamic axes) fp32 -> MatMul by a [DIM, 4] weight -> out."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [DIM, 4], [0.25] * (DIM * 4))
    graph = helper.make_graph([helper.make_node("MatMul", ["tokens", "w"], ["out"], name="proj")], "g",
                              [helper.make_tensor_value_info("tokens", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [*dims[:-1], 4])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _run(args, capsys) -> tuple[int, list[str]]:
    rc = main(args)
    return rc, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# ---- --grid text -------------------------------------------------------------------------------------------------

def test_grid_text_parses_and_formats_back():
    assert parse_grid(NON_SQUARE) == ((4, 4), (26, 46), (48, 48))
    assert parse_grid(" 2x3 : 5x7 :9x11") == ((2, 3), (5, 7), (9, 11))
    assert format_grid(parse_grid(NON_SQUARE)) == NON_SQUARE
    assert format_grid(DEFAULT_GRID) == "4x4:16x16:48x48"  # 56..672 px sides at patch 14, tuned for 224 px
    assert grid_triple((8, 16, 16)) == ((8, 8), (16, 16), (16, 16))  # sides still mean square grids
    assert grid_triple([(4, 6), 16, (20, 32)]) == ((4, 6), (16, 16), (20, 32))


@pytest.mark.parametrize("text,why", [
    ("16,16,32", "give MINHxMINW:OPTHxOPTW:MAXHxMAXW"),  # the old square-side syntax
    ("4x4:16x16", "give MINHxMINW:OPTHxOPTW:MAXHxMAXW"),
    ("4x4:16x16:48", "give MINHxMINW:OPTHxOPTW:MAXHxMAXW"),
    ("4x4:16x-1:48x48", "give MINHxMINW:OPTHxOPTW:MAXHxMAXW"),
    ("4x4:16x16:8x8", "height must be 1 <= min <= opt <= max, got 4, 16, 8"),
    ("4x4:16x50:48x48", "width must be 1 <= min <= opt <= max, got 4, 50, 48"),
    ("0x4:16x16:48x48", "height must be 1 <= min <= opt <= max, got 0, 16, 48"),
])
def test_bad_grid_text_is_one_line_exit_2_before_any_work(text, why, capsys, tmp_path):
    with pytest.raises(NtcError, match=why):
        parse_grid(text)
    for command in ("build", "run"):
        out = tmp_path / command
        rc, err = _run([command, str(ZOO_DIR / "mlp2x_gelu.pt"), "--out", str(out), "--grid", text], capsys)
        assert rc == 2 and len(err) == 1 and err[0].startswith("error: --grid") and why in err[0], err
        assert not out.exists()


def test_bad_batch_and_family_sides_are_one_line(capsys, tmp_path):
    rc, err = _run(["build", str(ZOO_DIR / "mlp2x_gelu.pt"), "--out", str(tmp_path), "--batch", "1,8"], capsys)
    assert rc == 2 and err == ["error: --batch '1,8': give min,opt,max as three integers, e.g. 1,1,8"]
    # InternVL's pixel shuffle takes even sides only: an odd opt grid cannot be an engine's tuning point
    rc, err = _run(["build", str(ZOO_DIR / "pixel_shuffle.pt"), "--out", str(tmp_path / "o"), "--grid",
                    "4x4:16x15:48x48"], capsys)
    assert rc == 2 and len(err) == 1 and "needs even grid sides" in err[0] and "has opt 16x15" in err[0]
    assert not (tmp_path / "o").exists()


# ---- the profile against the graph --------------------------------------------------------------------------------

def test_default_tokens_profile_follows_the_graph_rank():
    grid = parse_grid(NON_SQUARE)
    assert input_profiles([("tokens", [-1, -1, -1, DIM])], None, (1, 2, 8), grid) == {
        "tokens": [[1, 4, 4, DIM], [2, 26, 46, DIM], [8, 48, 48, DIM]]}
    # flat tokens [B, N, D]: N = h * w (26 * 46 = 1196)
    assert input_profiles([("tokens", [-1, -1, DIM])], None, (1, 2, 8), grid) == {
        "tokens": [[1, 16, DIM], [2, 1196, DIM], [8, 2304, DIM]]}


def test_a_static_grid_refuses_a_varying_profile(tmp_path):
    static = onnx.load(str(_token_graph(tmp_path / "static.fp32.onnx", ["B", 16, 16, DIM])))
    inputs = [(v.name, [d.dim_value or -1 for d in v.type.tensor_type.shape.dim]) for v in static.graph.input]
    with pytest.raises(NtcError, match=r"^static.fp32.onnx: input 'tokens' axis 1 is static \(16\) in the graph but "
                                       r"the profile asks 4..48: export that axis dynamic, or build with min = opt = "
                                       r"max = 16 on it$"):
        check_profiles("static.fp32.onnx", inputs, None)
    fixed = check_profiles("static.fp32.onnx", inputs, None, grid=parse_grid("16x16:16x16:16x16"))
    assert fixed == {"tokens": [[1, 16, 16, DIM], [1, 16, 16, DIM], [8, 16, 16, DIM]]}
    # a fixed profile of another size is refused too
    with pytest.raises(NtcError, match=r"axis 2 is static \(16\) in the graph but the profile asks 20"):
        check_profiles("static.fp32.onnx", inputs, None, grid=parse_grid("16x20:16x20:16x20"))


def test_only_the_dynamic_axis_may_vary(tmp_path):
    """Height dynamic, width static 16: a profile varying the width is refused, one varying the height is not."""
    inputs = [("tokens", [-1, -1, 16, DIM])]
    with pytest.raises(NtcError, match=r"axis 2 is static \(16\) in the graph but the profile asks 4..48"):
        check_profiles("tall.onnx", inputs, None, grid=parse_grid(NON_SQUARE))
    tall = check_profiles("tall.onnx", inputs, None, grid=parse_grid("4x16:26x16:48x16"))
    assert tall["tokens"] == [[1, 4, 16, DIM], [1, 26, 16, DIM], [8, 48, 16, DIM]]
    given = {"tokens": [[1, 4, 16, 4], [1, 8, 16, 4], [2, 8, 16, 4]]}  # wrong D in an explicit profile
    with pytest.raises(NtcError, match=r"axis 3 is static \(8\) in the graph but the profile asks 4"):
        check_profiles("tall.onnx", inputs, given)


def test_foreign_flat_tokens_take_h_by_w(tmp_path):
    from ntc_export.models import load

    grid = parse_grid(NON_SQUARE)
    dynamic = load(_token_graph(tmp_path / "user.onnx", ["B", "N", DIM]))
    assert dynamic.example_inputs(3, (26, 46))[0].shape == (3, 1196, DIM)
    assert dynamic.input_profiles((1, 2, 8), grid) == {"tokens": [[1, 16, DIM], [2, 1196, DIM], [8, 2304, DIM]]}
    static = load(_token_graph(tmp_path / "fixed.onnx", ["B", 256, DIM]))  # its N stays as the user made it
    assert static.input_profiles((1, 2, 8), grid) == {"tokens": [[1, 256, DIM], [2, 256, DIM], [8, 256, DIM]]}


def test_build_command_refuses_a_static_graph_before_any_build(tmp_path, capsys):
    onnx_path = _token_graph(tmp_path / "static.fp32.onnx", ["B", 16, 16, DIM])
    out = tmp_path / "out"
    rc, err = _run(["build", str(onnx_path), "--target", "rtx-ada", "--target", "jetson-orin", "--out", str(out)],
                   capsys)
    assert rc == 2 and len(err) == 1 and "static.fp32.onnx: input 'tokens' axis 1 is static (16)" in err[0], err
    assert not (out / "engines").exists()  # neither the engine nor the bundle was started


# ---- real builds --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def non_square_build(tmp_path_factory):
    """mlp2x_gelu (tokens [B, h, w, 384]) built fp32 for rtx-ada (TensorRT-RTX, here) and bundled for jetson-orin
    on the non-square profile 4x4:26x46:48x48."""
    out = tmp_path_factory.mktemp("grid_build")
    targets = ["--target", "rtx-ada"] if HAS_RTX else []  # the bundle needs no TensorRT here
    args = ["build", str(ZOO_DIR / "mlp2x_gelu.pt"), *targets, "--target", "jetson-orin", "--precision", "fp32",
            "--grid", NON_SQUARE, "--batch", "1,2,4", "--out", str(out), "--json"]
    assert main(args) == 0
    entries = json.loads((out / "engines" / "manifest.json").read_text())["engines"]
    return out, {e["target"]: e for e in entries}


WANT = [[1, 4, 4, 384], [2, 26, 46, 384], [4, 48, 48, 384]]


@needs_rtx
def test_non_square_profile_builds_an_rtx_engine(non_square_build):
    out, entries = non_square_build
    engine = entries["rtx-ada"]
    assert engine["kind"] == "engine" and engine["engine_bytes"] == (out / "engines" / engine["engine"]).stat().st_size
    assert engine["profiles"] == {"tokens": WANT}
    # the engine keeps batch, height and width dynamic; out_tokens follow them
    assert engine["inputs"] == [{"name": "tokens", "shape": [-1, -1, -1, 384], "dtype": "fp32"}]
    assert engine["outputs"][0]["shape"] == [-1, -1, 512]


@needs_rtx
def test_triton_config_writes_minus_one_for_the_varying_grid(non_square_build, tmp_path):
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient not installed")
    from google.protobuf import text_format
    from ntc_export.serving.repository import write_repository

    out, _ = non_square_build
    write_repository(out, tmp_path / "repo")
    for config_path in (tmp_path / "repo" / "mlp2x_gelu_fp32" / "config.pbtxt",
                        tmp_path / "repo" / "mlp2x_gelu_fp32" / "configs" / "cpu.pbtxt"):
        config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
        assert config.max_batch_size == 4
        assert [(t.name, list(t.dims)) for t in config.input] == [("tokens", [-1, -1, 384])]
        assert list(config.output[0].dims) == [-1, 512]


def test_jetson_bundle_carries_the_hw_profile(non_square_build):
    out, entries = non_square_build
    bundle = entries["jetson-orin"]
    assert bundle["kind"] == "bundle" and bundle["profiles"] == {"tokens": WANT}
    assert bundle["grid"] == {"min": [4, 4], "opt": [26, 46], "max": [48, 48]}
    folder = out / "engines" / bundle["bundle"]
    settings = json.loads((folder / "settings.json").read_text())
    assert settings["profiles"] == {"tokens": WANT} and settings["grid"] == bundle["grid"]
    proc = subprocess.run([sys.executable, str(folder / "build_engine.py"), "--dry-run"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "token grid: min 4x4 opt 26x46 max 48x48" in proc.stdout
    assert "profile tokens: min 1x4x4x384 opt 2x26x46x384 max 4x48x48x384" in proc.stdout
    assert "--optShapes=tokens:2x26x46x384" in proc.stdout
    assert "Token grids (h x w): min 4x4 opt 26x46 max 48x48" in (folder / "README.md").read_text()


@needs_rtx
def test_a_static_graph_builds_on_its_own_fixed_grid(tmp_path):
    from ntc_export.backend.trt.build import build_engine

    onnx_path = _token_graph(tmp_path / "static.fp32.onnx", ["B", 16, 12, DIM])
    with pytest.raises(NtcError, match="axis 1 is static"):
        build_engine(onnx_path, "rtx-ampere", "fp32", tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    entry = build_engine(onnx_path, "rtx-ampere", "fp32", tmp_path / "out", grid=parse_grid("16x12:16x12:16x12"))
    assert entry["profiles"] == {"tokens": [[1, 16, 12, DIM], [1, 16, 12, DIM], [8, 16, 12, DIM]]}
    assert entry["inputs"] == [{"name": "tokens", "shape": [-1, 16, 12, DIM], "dtype": "fp32"}]
