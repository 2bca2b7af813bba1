"""`ntc-export compress MODEL --data T.npz --out P`: one payload per image, all in one payload file."""

from pathlib import Path

import click

from .options import load_compressor


@click.command("compress")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="Token file from `ntc-export tokens` (.npz; the CLS row is kept out of the payloads).")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Payload file: every image's payload, in order.")
def command(model, data, out):
    """Compress every image's patch tokens into one self-describing payload (family, model fingerprint, grid,
    body); bytes per image are each payload's length."""
    from ..codec.payload import pack_file
    from ..data.tokens import load_tokens
    from ..evaluate.rate_distortion import encode_batched
    from ..util.atomic import write_bytes

    module = load_compressor(model)
    tokens = load_tokens(data)  # checked before any work
    patches = tokens.patch_tokens
    payloads = encode_batched(module, patches)
    write_bytes(out, pack_file(payloads))
    mean = sum(map(len, payloads)) / len(payloads)
    click.echo(f"{len(payloads)} payloads, {mean:.0f} bytes per image ({patches[0].size * 2 / mean:.2f}x smaller "
               f"than fp16 tokens) -> {out}")
