"""ONNX from a torch.export program through the torch.export-based exporter (onnxscript), with our ops translated
to their `ntc` nodes; the program's dynamic dims (torch.export.Dim) stay dynamic."""

import logging
import warnings

import onnx
import torch

from ...ops.domain import DOMAIN, import_domain
from ...ops.onnx_translations import declare_output_types, translation_table
from ...util.errors import NtcError


def program_to_onnx(program, input_names: list[str], output_names: list[str], opset: int) -> onnx.ModelProto:
    """fp32 ONNX of `program` (a torch.export.ExportedProgram) with the given I/O names."""
    args = program.example_inputs[0] if program.example_inputs else ()
    # onnx_ir logs each custom node output whose value_info it cannot serialize; the registry, each torchvision op
    # it skips (not installed, not needed)
    quiet = [logging.getLogger(n) for n in ("onnx_ir", "torch.onnx._internal.exporter._registration")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(program, args, dynamo=True, opset_version=opset, verbose=False,
                                             input_names=input_names, output_names=output_names,
                                             custom_translation_table=translation_table())
            model = onnx_program.model_proto  # serialized here, where onnx_ir's logging is quiet
    except Exception as e:  # the exporter raises its own error types; the first line names the node
        raise NtcError(f"ONNX export of the torch.export program failed: "
                       f"{(str(e).strip().splitlines() or [''])[0][:300]}") from None
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)
    if any(n.domain == DOMAIN for n in model.graph.node):
        import_domain(model, DOMAIN)  # onnxscript leaves custom domains out of the opset imports
    declare_output_types(model)
    return model
