"""Checkpoint format: round trip, and one-line errors (exit 2 from the CLI) for each kind of bad file."""

import pickle

import pytest
import torch
from ntc_export.cli import main
from ntc_export.models import build, load, save
from ntc_export.util.errors import NtcError


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build("patch_merger", {"input_dim": 32, "output_dim": 16, "mlp_hidden": 24, "num_classes": 3})


def test_round_trip_is_exact(model, tmp_path):
    path = tmp_path / "m.pt"
    save(model, path)
    loaded = load(path)
    x = torch.randn(2, 36, 32)
    for a, b in zip(model(x), loaded(x)):
        assert torch.equal(a, b)
    assert loaded.config == model.config


def test_half_checkpoint_stores_float16_and_loads_as_float32(model, tmp_path):
    save(model, tmp_path / "full.pt")
    save(model, tmp_path / "half.pt", half=True)
    stored = torch.load(tmp_path / "half.pt", weights_only=True)["state_dict"]
    assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    loaded = load(tmp_path / "half.pt")
    for name, value in model.state_dict().items():
        got = loaded.state_dict()[name]
        assert got.dtype == value.dtype and torch.equal(got, value.half().to(value.dtype))
    assert (tmp_path / "half.pt").stat().st_size < 0.6 * (tmp_path / "full.pt").stat().st_size


def _error(path) -> str:
    with pytest.raises(NtcError) as e:
        load(path)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_pickled_module_is_refused(model, tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save(model, path)  # a whole pickled nn.Module: must never be unpickled
    assert "unpickle" in _error(path)


def test_unknown_arch(model, tmp_path):
    path = tmp_path / "u.pt"
    torch.save({"format": "ntc-export/1", "arch": "nope", "config": {}, "state_dict": {}}, path)
    assert "unknown architecture 'nope'" in _error(path)


def test_missing_and_extra_keys(model, tmp_path):
    sd = dict(model.state_dict())
    sd.pop("ln_q.weight")
    sd["extra.weight"] = torch.zeros(1)
    path = tmp_path / "k.pt"
    torch.save({"format": "ntc-export/1", "arch": model.arch, "config": model.config, "state_dict": sd}, path)
    msg = _error(path)
    assert "missing keys ['ln_q.weight']" in msg and "unexpected keys ['extra.weight']" in msg


def test_wrong_shapes(model, tmp_path):
    sd = dict(model.state_dict())
    sd["ln_q.weight"] = torch.zeros(5)
    path = tmp_path / "s.pt"
    torch.save({"format": "ntc-export/1", "arch": model.arch, "config": model.config, "state_dict": sd}, path)
    assert "ln_q.weight" in _error(path)


def test_truncated_file(model, tmp_path):
    path = tmp_path / "t.pt"
    save(model, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _error(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    assert "not an ntc-export checkpoint" in _error(path)
    (tmp_path / "garbage.pt").write_bytes(b"\x00" * 100)
    assert "corrupt" in _error(tmp_path / "garbage.pt")


def test_cli_exit_code_2_without_traceback(model, tmp_path, capsys):
    path = tmp_path / "pickled.pt"
    torch.save(model, path)
    assert main(["export", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and err.count("\n") == 1
    assert not (tmp_path / "o" / "model.fp32.onnx").exists()


def test_save_is_atomic(model, tmp_path, monkeypatch):
    path = tmp_path / "a.pt"
    save(model, path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]


def test_pickle_payload_never_executes(tmp_path):
    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "ntc-export/1", "x": Evil()}, f)
    with pytest.raises(NtcError):
        load(path)
    assert not (tmp_path / "pwned").exists()
