"""`ntc-export compress MODEL --data T.npz --out P`: one payload per image, all in one payload file."""

from pathlib import Path

import click

from .options import load_compressor


@click.command("compress")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), required=True,
              help="Token file from `ntc-export tokens` (.npz, any grid or images on several; the CLS row is kept out "
                   "of the payloads).")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Payload file: every image's payload, in order.")
def command(model, data, out):
    """Compress every image's patch tokens into one self-describing payload (family, model fingerprint, the image's
    own grid, body); bytes per image are each payload's length. Images on several grids are coded grid by grid."""
    from ..codec.payload import pack_file
    from ..data.tokens import load_tokens
    from ..evaluate.rate_distortion import encode_set, fp16_bytes_per_image, token_dim
    from ..evaluate.validate import check_tokens_fit
    from ..util.atomic import write_bytes

    module = load_compressor(model)
    tokens = load_tokens(data)
    for _, ts in tokens.by_grid():  # every grid checked before any work
        check_tokens_fit(module, ts.grid_tokens[:1])
    payloads = encode_set(module, tokens)
    write_bytes(out, pack_file(payloads))
    mean = sum(map(len, payloads)) / len(payloads)
    grids = ", ".join(f"{ts.grid[0]}x{ts.grid[1]}" for _, ts in tokens.by_grid())
    click.echo(f"{len(payloads)} payloads ({token_dim(tokens)}-d tokens on {grids}), {mean:.0f} bytes per image "
               f"({fp16_bytes_per_image(tokens) / mean:.2f}x smaller than fp16 tokens) -> {out}")
