"""Bad Hugging Face folders: one-line errors, exit 2, nothing written (not even a temp file)."""

import json

import pytest
import torch
from ntc_export.cli import main
from ntc_export.hf import convert
from ntc_export.util.errors import NtcError

MERGER = "visual.merger."  # Qwen2-VL's projector as transformers 5 saves it (one model.safetensors)


def _fails(capsys, tmp_path, folder) -> str:
    """Run convert-hf on `folder`: exit 2, one stderr line, no file under the output folder; returns the line."""
    out_dir = tmp_path / "out"
    capsys.readouterr()  # what fixtures printed
    assert main(["convert-hf", str(folder), "--out", str(out_dir / "model.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert not out_dir.exists() or not any(out_dir.iterdir())
    return err


def _edit_tensors(folder, edit) -> None:
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    tensors = load_file(path)
    edit(tensors)
    save_file(tensors, path, metadata={"format": "pt"})


def _edit_config(folder, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_missing_projector_key(hf_copy, capsys, tmp_path):
    folder = hf_copy("qwen2_vl")
    _edit_tensors(folder, lambda t: t.pop(MERGER + "mlp.2.bias"))
    err = _fails(capsys, tmp_path, folder)
    assert "tensors missing" in err and MERGER + "mlp.2.bias" in err


def test_no_projector_at_all(hf_copy, capsys, tmp_path):
    folder = hf_copy("llava")
    _edit_tensors(folder, lambda t: [t.pop(k) for k in list(t) if k.startswith("multi_modal_projector.")])
    err = _fails(capsys, tmp_path, folder)
    assert "no LLaVA projector tensors" in err and "multi_modal_projector.*" in err


def test_mis_shaped_key(hf_copy, capsys, tmp_path):
    folder = hf_copy("qwen2_vl")
    key = MERGER + "mlp.0.weight"
    _edit_tensors(folder, lambda t: t.update({key: t[key][:, :-1].contiguous()}))
    err = _fails(capsys, tmp_path, folder)
    assert f"{MERGER}mlp.0.weight has shape [1536, 1535], expected [1536, 1536]" in err


def test_shape_against_the_config(hf_copy, capsys, tmp_path):
    """A consistent set of tensors that is not the model config.json describes."""
    folder = hf_copy("qwen2_vl")
    _edit_config(folder, vision_config={**json.loads((folder / "config.json").read_text())["vision_config"],
                                        "embed_dim": 512})
    err = _fails(capsys, tmp_path, folder)
    assert f"{MERGER}ln_q.weight has shape [384], but config.json states input dim 512" in err


def test_deepstack_merger_missing(hf_copy, capsys, tmp_path):
    """config.json lists 2 DeepStack layers; one merger's tensors are gone (sharded checkpoint, index edited)."""
    folder = hf_copy("qwen3_vl", sharded=True)
    index = folder / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"] = {k: v for k, v in data["weight_map"].items() if "deepstack_merger_list.1." not in k}
    index.write_text(json.dumps(data))
    assert "deepstack1 tensors" in _fails(capsys, tmp_path, folder)


@pytest.mark.parametrize("model_type", ["gemma3", None])
def test_unsupported_model_type(hf_copy, capsys, tmp_path, model_type):
    folder = hf_copy("llava")
    _edit_config(folder, model_type=model_type)
    err = _fails(capsys, tmp_path, folder)
    assert f"model_type {model_type!r} is not supported" in err and "qwen2_5_vl" in err


def test_unsupported_variant(hf_copy, capsys, tmp_path):
    """InternVL's v1 pixel shuffle leaves the merged grid transposed: refused, not converted into another function."""
    folder = hf_copy("internvl", "original")
    _edit_config(folder, ps_version="v1")
    assert "ps_version='v1' is not supported" in _fails(capsys, tmp_path, folder)


def test_pickles_corrupt_files_and_no_config(hf_copy, capsys, tmp_path):
    folder = hf_copy("qwen2_vl")
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:1000])
    assert "not a readable safetensors file" in _fails(capsys, tmp_path, folder)
    (folder / "model.safetensors").unlink()
    torch.save({MERGER + "ln_q.weight": torch.ones(384)}, folder / "pytorch_model.bin")
    assert "no *.safetensors files" in _fails(capsys, tmp_path, folder)
    (folder / "config.json").unlink()
    assert "no config.json" in _fails(capsys, tmp_path, folder)
    assert "not a folder" in _fails(capsys, tmp_path, folder / "missing")


def test_api_raises_ntc_error(tmp_path):
    with pytest.raises(NtcError, match="no config.json"):
        convert(tmp_path)
