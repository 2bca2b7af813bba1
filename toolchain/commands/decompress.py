"""`ntc-export decompress MODEL P --out T.npz`: decode a payload file written by `ntc-export compress`."""

from pathlib import Path

import click

from ..util.errors import NtcError
from .options import load_compressor


@click.command("decompress")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("payloads", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Decoded patch tokens (.npz: patch_tokens [N, h*w, D] float32).")
def command(model, payloads, out):
    """Decode a payload file written by `ntc-export compress` with the same model."""
    import numpy as np

    from ..codec.payload import unpack_file
    from ..util.atomic import atomic_path

    module = load_compressor(model)
    if not payloads.is_file():
        raise NtcError(f"{payloads}: no such payload file")
    tokens = module.decode(unpack_file(payloads.read_bytes(), str(payloads)))
    with atomic_path(out, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, patch_tokens=tokens)
    click.echo(f"{len(tokens)} images -> patch tokens {list(tokens.shape)} -> {out}")
