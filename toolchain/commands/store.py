"""`ntc-export store build|get|verify|stat`: compressed visual-token stores (ntc_export.store)."""

import json
from pathlib import Path

import click

from .options import load_compressor, quiet_option


@click.group("store")
def command():
    """Build and read compressed visual-token stores: sharded (WebDataset tar), indexed, resumable."""


@command.command("build")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--images-from", type=click.Path(path_type=Path), help="A text file of image paths, one a line.")
@click.option("--builtin", help="A built-in image set: skimage, digits, photos or photos:train|calib|val (every crop).")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True, help="Store folder.")
@click.option("--size", default="224", show_default=True,
              help="ViT input: a side (224), WxH (448x252) or native (each image near its own aspect ratio).")
@click.option("--max-pixels", type=int, help="--size native: the most pixels an image is resized to.")
@click.option("--shard-images", type=int, default=256, show_default=True, help="Images per shard.")
@click.option("--batch", type=int, default=8, show_default=True, help="Images per ViT and encoder call.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--jobs", type=int, help="local: work units run at once (threads); ray: CPUs of a local Ray instance "
                                       "and concurrent encoder workers.")
@click.option("--ray-address", help="An existing Ray cluster (default: start a local instance).")
@quiet_option
def build_cmd(model, images, images_from, builtin, out, size, max_pixels, shard_images, batch, executor, jobs,
              ray_address, quiet):
    """Build (or complete) a store: each image's ViT tokens coded by MODEL into one payload. A rerun skips the
    shards already committed."""
    from ..data.tokens import parse_size
    from ..store import build as store_build
    from ..store import sources
    from ..util.errors import NtcError

    given = [bool(images), images_from is not None, builtin is not None]
    if sum(given) != 1:
        raise NtcError("give the images one way: IMAGES..., --images-from LIST or --builtin NAME")
    if images:
        items, source = sources.from_files(images), "files"
    elif images_from is not None:
        items, source = sources.from_list(images_from), f"list:{images_from.name}"
    else:
        items, source = sources.from_builtin(builtin), f"builtin:{builtin}"
    module = load_compressor(model)
    manifest = store_build.build(module, items, out, checkpoint=model, size=parse_size(size), max_pixels=max_pixels,
                                 shard_images=shard_images, batch=batch, executor=executor, jobs=jobs,
                                 ray_address=ray_address, source=source, progress=not quiet)
    click.echo(f"{manifest['images']} images in {manifest['shards']} shards, {manifest['payload_bytes']} payload "
               f"bytes -> {out}")


@command.command("get")
@click.argument("store", type=click.Path(path_type=Path))
@click.argument("key")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Decoded tokens (.npz: patch_tokens [1, h*w, D], grid [h, w]).")
@click.option("--route", type=click.Choice(["host", "ort"]), default="host", show_default=True,
              help="Decode with the compressor's own decoder or its ONNX decoder graph in ONNX Runtime.")
def get_cmd(store, key, out, route):
    """Decode one image of STORE by KEY."""
    import numpy as np

    from .. import store as st
    from ..codec.payload import write_decoded

    s = st.open(store, route=route)
    tokens, (h, w) = s.get(key)
    write_decoded(out, [(np.array([0]), tokens.reshape(1, h, w, -1))], 1)
    click.echo(f"{key}: {h}x{w} tokens of {tokens.shape[-1]} -> {out}")


@command.command("verify")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--sample", type=int, default=16, show_default=True, help="Good images decoded (-1: all).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def verify_cmd(store, sample, as_json):
    """Check every payload's checksum and header and decode a sample; name every bad image. Exit 1 if any."""
    from .. import store as st
    from ..store.check import verify

    result = verify(st.open(store), sample)
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        for b in result["bad"]:
            click.echo(f"bad: {b['key']} ({b['shard']}): {b['problem']}")
        click.echo(f"{result['images']} images checked, {result['decoded']} decoded, {len(result['bad'])} bad"
                   f"{'' if result['complete'] else ' (store incomplete: rerun its build)'}")
    if result["bad"]:
        click.get_current_context().exit(1)


@command.command("stat")
@click.argument("store", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def stat_cmd(store, as_json):
    """Bytes on disk, rate (bytes per image, bits per token, x smaller than fp16), images and grids."""
    from .. import store as st
    from ..store.check import stat

    s = stat(st.open(store))
    if as_json:
        click.echo(json.dumps(s, indent=2))
        return
    grids = ", ".join(f"{g}: {n}" for g, n in s["grids"].items())
    click.echo(f"{s['images']} images in {s['shards']} shards{'' if s['complete'] else ' (incomplete)'}, "
               f"{s['model']} ({s['family']})\n{s['bytes_on_disk']} bytes on disk ({s['shard_bytes']} in shards, "
               f"{s['checkpoint_bytes']} the checkpoint), {s['payload_bytes']} payload bytes: "
               f"{s['bytes_per_image']:.0f} bytes per image, {s['bits_per_token']:.2f} bits per token, "
               f"{s['fp16_ratio']:.1f}x smaller than fp16 tokens\ngrids: {grids}")

