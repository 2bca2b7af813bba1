"""The decode route of every rate-distortion row and its cost (evaluate/decode_cost.py), on one image of the most
numerous grid: a trained compressor runs its decoder graphs (and the decode-side graphs beside it), a PCA or
quantization reference its dequantization graph, a pixel route the picture decode on the host and then the ViT.
"""

import numpy as np

from . import decode_cost


def sample_group(tokens):
    """(indices, TokenSet) of the grid group with the most images: its first image is the one costed."""
    return max(tokens.by_grid(), key=lambda group: len(group[0]))


def codec_graphs(codec, patch_tokens_1, exported: dict | None = None) -> list:
    """The ONNX graphs that turn one image's payload into tokens: a reference codec names its own, a trained
    compressor its deployable decoder and decode-side graphs (`exported`: those a build already holds, by name)."""
    if hasattr(codec, "decode_graphs"):
        return codec.decode_graphs(patch_tokens_1)
    return decode_cost.compressor_graphs(codec, patch_tokens_1, exported)


def codec_cost(codec, tokens, batches=(1, 16), exported: dict | None = None) -> dict:
    _, ts = sample_group(tokens)
    graphs = codec_graphs(codec, np.ascontiguousarray(ts.grid_tokens[:1]), exported)
    return decode_cost.route_cost(graphs, batches=batches)


def vit_graph(picture: np.ndarray, grid: tuple[int, int]):
    """The ViT token model fed one picture at the grid's pixel size."""
    import onnx

    from ..data import vit
    from ..data.tokens import preprocess

    size = (grid[0] * vit.PATCH, grid[1] * vit.PATCH)
    return decode_cost.DecodeGraph("vit", onnx.load(str(vit.token_model_path())),
                                   {vit.IMAGE_INPUT: preprocess([picture], size)})


def pixel_costs(rows: list[dict], tokens, pictures, batches=(1, 16)) -> list[dict]:
    """Each pixel row's cost: its measured picture decode (host) then the ViT, counted and timed once per grid."""
    idx, ts = sample_group(tokens)
    vit = vit_graph(pictures[int(idx[0])], ts.grid)
    return [decode_cost.route_cost([vit], host_ms=r["image_decode_ms"], batches=batches) for r in rows]
