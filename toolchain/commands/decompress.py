"""`ntc-export decompress MODEL P --out T.npz`: decode a payload file written by `ntc-export compress`."""

from pathlib import Path

import click

from ..util.errors import NtcError
from .options import load_compressor


@click.command("decompress")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("payloads", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Decoded patch tokens (.npz: patch_tokens [N, h*w, D] float32 and grid [h, w]; images on several "
                   "grids: a ragged file, packed_patch_tokens [sum h*w, D], grids [N, 2], offsets [N+1]).")
def command(model, payloads, out):
    """Decode a payload file written by `ntc-export compress` with the same model, each token grid on its own."""
    from ..codec.payload import expect, grid_groups, unpack, unpack_file, write_decoded

    module = load_compressor(model)
    if not payloads.is_file():
        raise NtcError(f"{payloads}: no such payload file")
    items = unpack_file(payloads.read_bytes(), str(payloads))
    fingerprint = module.fingerprint()
    for i, p in enumerate(items):  # every payload's writer checked before any decoding, named by its place in the file
        expect(unpack(p, f"payload {i}"), module.family, fingerprint, f"payload {i}")
    groups = [(idx, _decode(module, group)) for idx, group in grid_groups(items)]
    arrays = write_decoded(out, groups, len(items))
    grids = ", ".join(f"{t.shape[1]}x{t.shape[2]}" for _, t in groups)
    click.echo(f"{len(items)} images on {grids} -> {', '.join(f'{k} {list(v.shape)}' for k, v in arrays.items())} "
               f"-> {out}")


def _decode(module, payloads):
    """Payloads of one grid -> patch tokens [n, h, w, D] on that grid (recorded in every payload)."""
    from ..codec.payload import unpack

    h, w = unpack(payloads[0]).grid
    tokens = module.decode(payloads)
    return tokens.reshape(len(tokens), h, w, tokens.shape[-1])
