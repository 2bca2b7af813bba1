"""`ntc-export store get|stat|verify` on a built store, and bad inputs as one line with exit 2."""

import json

import numpy as np
from store_helpers import decoded, tar_payloads


def test_get_writes_the_decoded_tokens(built_store, module, tmp_path, capsys):
    from ntc_export.cli import main

    out = tmp_path / "t.npz"
    assert main(["store", "get", str(built_store), "chelsea", "--out", str(out)]) == 0
    payloads = {name: p for (_, name), p in tar_payloads(built_store).items()}
    with np.load(out) as z:
        assert z["grid"].tolist() == [8, 12]
        np.testing.assert_array_equal(z["patch_tokens"][0], decoded(module, payloads["000000001.ntcp"]))
    assert "chelsea: 8x12" in capsys.readouterr().out


def test_stat_counts_what_a_tar_reader_finds(built_store, capsys):
    from ntc_export.cli import main

    assert main(["store", "stat", str(built_store), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    payloads = tar_payloads(built_store)
    on_disk = sum(p.stat().st_size for p in built_store.iterdir())
    payload_bytes = sum(map(len, payloads.values()))
    assert s["images"] == len(payloads) == 24 and s["grids"] == {"8x12": 24} and s["complete"]
    assert s["bytes_on_disk"] == on_disk and s["payload_bytes"] == payload_bytes
    assert s["bits_per_token"] == 8 * payload_bytes / (24 * 96)
    assert s["fp16_ratio"] == 24 * 96 * 384 * 2 / payload_bytes
    assert main(["store", "verify", str(built_store)]) == 0
    assert capsys.readouterr().out.strip() == "24 images checked, 16 decoded, 0 bad"


def test_bad_inputs_are_one_line_exit_2(built_store, tmp_path, capsys):
    from ntc_export.cli import main

    cases = [(["store", "stat", str(tmp_path / "missing")], "no such token store"),
             (["store", "get", str(built_store), "nope", "--out", str(tmp_path / "t.npz")], "no image with key 'nope'"),
             (["store", "stat", str(tmp_path)], "not a token store"),
             (["store", "build", "model.pt", "--out", str(tmp_path / "x")], "give the images one way"),
             (["store", "build", str(tmp_path / "none.pt"), "--builtin", "nosuch", "--out", str(tmp_path / "x")],
              "unknown built-in image set")]
    for args, words in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, (args, err)
