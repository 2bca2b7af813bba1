"""`ntc-export train`: fit a token compressor on real visual tokens and save an ntc-export checkpoint."""

from pathlib import Path

import click

from ..train.recipes import TRAINABLE


@click.command("train")
@click.option("--arch", type=click.Choice(TRAINABLE), default="bc_autoencoder", show_default=True,
              help="Compressor family: bc_autoencoder (BC4/BC5 latent textures), vq (product/residual codebooks), "
                   "hyperprior (entropy-coded latents with a scale hyperprior), ntc_grid (NTC-style latent grids).")
@click.option("--rate", type=float, default=16.0, show_default=True,
              help="Compression rate against fp16 tokens (bytes per image = 256*384*2 / rate at 224 px).")
@click.option("--data", default="builtin:photos", show_default=True,
              help="Training tokens: builtin:photos or builtin:digits (their train split), builtin:skimage, or a "
                   "TokenSet .npz.")
@click.option("--epochs", type=int, default=8, show_default=True)
@click.option("--batch", type=int, default=16, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--merge", type=int, default=None,
              help="bc_autoencoder: code k x k token cells as one latent vector (default: 1 below 8x, else 2).")
@click.option("--dim", type=int, default=None, help="Decoder width (each family's default).")
@click.option("--depth", type=int, default=None, help="Decoder Swin blocks (each family's default).")
@click.option("--bc-format", type=click.Choice(["bc4", "bc5"]), default=None,
              help="bc_autoencoder, ntc_grid: texture format of the latents (default bc5; ntc_grid: none, 4-bit).")
@click.option("--max-images", type=int, default=None, help="Use only the first N training images.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output checkpoint (.pt).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def train(arch, rate, data, epochs, batch, lr, seed, merge, dim, depth, bc_format, max_images, out, no_progress):
    """Train a token compressor on real visual tokens, starting from each family's data-driven initialisation
    (PCA of token cells, k-means codebooks) with its quantiser simulated in the loop (BC4/BC5, straight-through
    codebooks, additive noise for entropy-coded latents).

    \b
    ntc-export train --arch bc_autoencoder --rate 16 --data builtin:photos --epochs 8 --out bcae_x16.pt
    ntc-export train --arch vq --rate 32 --out vq_x32.pt
    """
    from ..models import save
    from ..train.compressor import load_patch_tokens, train_compressor
    from ..train.recipes import recipe
    from ..util.errors import NtcError

    if rate <= 0:  # every flag checked before the tokens load
        raise NtcError(f"--rate must be positive, got {rate}")
    if max_images is not None and max_images < 1:
        raise NtcError(f"--max-images must be >= 1, got {max_images}")
    if epochs < 1 or batch < 1:
        raise NtcError(f"--epochs and --batch must be >= 1 (got {epochs}, {batch})")
    tokens, _ = load_patch_tokens(data, "train")
    tokens = tokens[:max_images]
    overrides = {k: v for k, v in dict(merge=merge, dim=dim, depth=depth, bc_format=bc_format).items() if v is not None}
    config = recipe(arch).config_for_rate(rate, tokens.shape[-1], **overrides)
    result = train_compressor(arch, config, tokens, epochs=epochs, batch=batch, lr=lr, seed=seed,
                              progress=not no_progress)
    save(result.module, out)
    last = result.history[-1]
    click.echo(f"{arch} rate {rate:g}x ({result.module.bytes_per_image()} B/image at 16x16 tokens): {len(tokens)} "
               f"images, {epochs} epochs, final loss {last['loss']:.4f}, train cosine {last['cosine']:.4f} -> {out}")
    for key, value in result.summary.items():
        click.echo(f"  {key}: {value}")


command = train
