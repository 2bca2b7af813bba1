"""`ntc-export convert-hf DIR --out model.pt`: a Hugging Face VLM checkpoint's projector(s) as our checkpoints."""

from pathlib import Path

import click


@click.command("convert-hf")
@click.argument("folder", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Checkpoint for the main projector; extra ones (Qwen3-VL DeepStack mergers) go beside it as "
                   "OUT_STEM.deepstack<i>.pt.")
def command(folder, out):
    """Convert the projector of a Hugging Face checkpoint FOLDER (config.json + *.safetensors, sharded or not) of
    Qwen2-VL, Qwen2.5-VL, Qwen3-VL, LLaVA or InternVL into ntc-export checkpoints.

    Only the projector tensors are read (safetensors, never a pickle); every key and shape is checked before
    anything is written. The checkpoints take patch tokens [B, h*w, D] row-major; Qwen-VL processors emit patches
    in 2x2 merge-window order instead (ntc_export.hf.merge_order maps one to the other).

    \b
    ntc-export convert-hf ~/models/Qwen2.5-VL-7B-Instruct --out qwen25vl_merger.pt
    ntc-export qwen25vl_merger.pt --data my_1280d_tokens.npz      # the main job; a folder works there too
    """
    from ..hf import convert, write

    converted = convert(folder)
    for c, path in zip(converted, write(converted, out)):
        m = c.module
        click.echo(f"{path}: {c.meta['family']} {c.meta['part']} -> {m.arch} ({m.input_dim} -> {m.output_dim}), "
                   f"input order of the source: {c.meta['input_order']}")
