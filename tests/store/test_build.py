"""Building a store: the format as a tar reader sees it, resuming after kill -9, and the Ray executor."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from store_helpers import CLI_BUILD, MODEL, build_reference, store_files, tar_payloads


def test_shards_are_plain_tar_members_the_index_points_at(built_store, module):
    from ntc_export.codec.payload import unpack
    from ntc_export.data.tokens import SKIMAGE_NAMES
    from ntc_export.store import index

    members = tar_payloads(built_store)
    entries = json.loads((built_store / "index.json").read_text())["entries"]
    assert [e[0] for e in entries] == list(SKIMAGE_NAMES)
    assert len(members) == len(entries) == 24 and len({s for s, _ in members}) == 6
    for pos, (key, shard, offset, length, h, w, sha) in enumerate(entries):
        payload = members[shard, f"{pos:09d}.ntcp"]
        with open(built_store / shard, "rb") as f:
            f.seek(offset)
            assert f.read(length) == payload
        assert index.payload_sha256(payload) == sha
        assert unpack(payload).grid == (h, w) == (8, 12)
    manifest = json.loads((built_store / "manifest.json").read_text())
    assert manifest["complete"] and manifest["images"] == 24
    assert manifest["model"]["fingerprint"] == module.fingerprint().hex()


def _cli(*args):
    return [sys.executable, "-c", "import sys; from ntc_export.cli import entry; sys.argv[0] = 'ntc-export'; entry()",
            *args]


def test_kill_9_halfway_then_rerun_gives_the_uninterrupted_store(built_store, tmp_path):
    out = tmp_path / "store"
    proc = subprocess.Popen(_cli("store", "build", *CLI_BUILD, "--out", str(out), "--quiet"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "shard-00000.json").exists():  # the first shard committed
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = store_files(out)
    assert "index.json" not in killed, "the build finished before the kill: nothing was interrupted"
    committed = [n for n in killed if n.endswith(".json") and n.startswith("shard-")]
    assert all(n.replace(".json", ".tar") in killed for n in committed)
    done = subprocess.run(_cli("store", "build", *CLI_BUILD, "--out", str(out)), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f"{len(committed)} of 6 shards already committed" in done.stderr
    assert "images/s" in done.stderr
    assert store_files(out) == store_files(built_store)  # no temp file left, every byte as uninterrupted


def test_rerun_with_other_inputs_is_refused(built_store, tmp_path):
    import shutil

    from ntc_export.store import build, sources
    from ntc_export.util.errors import NtcError

    out = tmp_path / "copy"
    shutil.copytree(built_store, out)
    with pytest.raises(NtcError, match="another inputs"):
        build_reference(out, sources.from_builtin("skimage")[:8])
    with pytest.raises(NtcError, match="twice"):
        sources.check_unique([("a", "x"), ("a", "y")])
    assert build.DEFAULT_SHARD_IMAGES > 0


def test_ray_executor_writes_the_same_bytes(tmp_path):
    pytest.importorskip("ray.data")
    from ntc_export.store import sources

    items = sources.from_builtin("skimage")[:8]
    build_reference(tmp_path / "local", items)
    build_reference(tmp_path / "ray", items, executor="ray")
    local, ray = store_files(tmp_path / "local"), store_files(tmp_path / "ray")
    assert sorted(local) == sorted(ray) and len([n for n in local if n.endswith(".tar")]) == 2
    for name in local:
        assert local[name] == ray[name], name
    assert np.frombuffer(local["shard-00000.tar"], np.uint8).any()


def test_native_sizes_give_one_store_of_several_grids(tmp_path, module, capsys):
    from PIL import Image

    from ntc_export.cli import main
    from ntc_export.codec.payload import unpack
    from ntc_export.data.tokens import builtin_images, smart_resize
    from ntc_export.store import open as open_store

    images = builtin_images("skimage")[0]
    shapes = [(120, 250), (250, 120), (140, 140)]
    for i, (h, w) in enumerate(shapes):
        Image.fromarray(images[i][:h, :w]).save(tmp_path / f"im{i}.png")
    (tmp_path / "list.txt").write_text("# pictures\nim0.png\nim1.png\nim2.png\n")
    out = tmp_path / "native"
    assert main(["store", "build", str(MODEL), "--images-from", str(tmp_path / "list.txt"), "--size", "native",
                 "--max-pixels", str(126 * 126), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    s = open_store(out)
    want = [tuple(v // 14 for v in smart_resize(h, w, max_pixels=126 * 126)) for h, w in shapes]
    assert len(set(want)) == 3 and [e.grid for e in s.entries] == want
    payloads = {name: p for (_, name), p in tar_payloads(out).items()}
    for pos, tokens in enumerate(s.decode(["im2.png", "im0.png", "im1.png"])):
        p = payloads[f"{[2, 0, 1][pos]:09d}.ntcp"]
        np.testing.assert_array_equal(tokens, module.decode([p])[0])
        assert tokens.shape[0] == np.prod(unpack(p).grid)
