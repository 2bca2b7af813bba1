"""Reading a store: random access, a DataLoader epoch with 2 workers, the ONNX Runtime route, a flipped byte."""

import shutil

import numpy as np
import pytest
from store_helpers import decoded, tar_payloads


def test_dataloader_two_workers_one_epoch(built_store, module):
    import torch.utils.data as data

    from ntc_export import store

    s = store.open(built_store)
    payloads = {name: p for (_, name), p in tar_payloads(built_store).items()}
    for ds, kwargs in ((s.dataset(), {"shuffle": True, "batch_size": 5}), (s.iterable(batch=3), {"batch_size": 5})):
        seen = {}
        loader = data.DataLoader(ds, num_workers=2, collate_fn=store.collate_list, **kwargs)
        for batch in loader:
            for item in batch:
                assert item["key"] not in seen
                seen[item["key"]] = item
        assert sorted(seen) == sorted(s.keys)
        for pos, key in enumerate(s.keys):
            want = decoded(module, payloads[f"{pos:09d}.ntcp"])
            assert seen[key]["grid"].tolist() == [8, 12]
            np.testing.assert_array_equal(seen[key]["tokens"].numpy(), want)


def test_random_access_and_the_onnx_runtime_route(built_store, module):
    from ntc_export import store
    from ntc_export.util.errors import NtcError

    host, ort = store.open(built_store), store.open(built_store, route="ort")
    keys = ["moon", "astronaut", "stereo_motorcycle"]
    payloads = {name: p for (_, name), p in tar_payloads(built_store).items()}
    for key, a, b in zip(keys, host.decode(keys), ort.decode(keys)):
        want = decoded(module, payloads[f"{host.position(key):09d}.ntcp"])
        np.testing.assert_array_equal(a, want)
        assert np.abs(b - want).max() <= 1e-4 * np.abs(want).max()
    tokens, grid = host.get(-1)
    assert grid == (8, 12) and tokens.shape == (96, 384)
    with pytest.raises(NtcError, match="no image with key"):
        host.get("nope")
    with pytest.raises(NtcError, match="out of range"):
        host.get(24)


def test_one_flipped_byte_is_named_and_the_rest_still_decodes(built_store, module, tmp_path, capsys):
    from ntc_export import store
    from ntc_export.cli import main
    from ntc_export.util.errors import NtcError

    root = tmp_path / "s"
    shutil.copytree(built_store, root)
    s = store.open(root)
    victim = s.entries[s.position("coins")]
    with open(root / victim.shard, "r+b") as f:
        f.seek(victim.offset + victim.length // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x10]))
    assert main(["store", "verify", str(root), "--sample", "-1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[1] for ln in out if ln.startswith("bad:")] == ["coins"]
    assert out[-1] == "24 images checked, 23 decoded, 1 bad"
    s = store.open(root)
    with pytest.raises(NtcError, match="coins.*checksum"):
        s.get("coins")
    payloads = {name: p for (_, name), p in tar_payloads(built_store).items()}
    others = [k for k in s.keys if k != "coins"]
    for key, tokens in zip(others, s.decode(others)):
        np.testing.assert_array_equal(tokens, decoded(module, payloads[f"{s.position(key):09d}.ntcp"]))
