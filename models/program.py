"""User models saved with `torch.export.save` (`.pt2`): checked before loading, then wrapped so the main job and
every subcommand treat them like our own token models.

What `torch.export.load` deserializes (torch 2.13, torch/export/pt2_archive/_package.py): JSON (the program, the
payload configs), raw tensor bytes, and four kinds of pickle: the sample inputs (`torch.load`, weights_only=True
first, then *weights_only=False* as a fallback), legacy `.pt` weights/constants and `use_pickle` payloads
(weights_only=False), torchbind/opaque constants (`pickle.loads`), plus AOTInductor native libraries. We accept
only the JSON and raw-tensor members, and the sample inputs after they load with weights_only=True here (so torch's
fallback is never reached); anything else is refused before torch.export.load sees the file.

Metadata we define (optional): an extra file `ntc-export.json` (`torch.export.save(ep, f, extra_files={...})`)
with `input_names` and `output_names` (ONNX names, in order); defaults: the forward's argument names, and
`tokens_out` for a single output (`output_<i>` for several). The one input must be patch tokens [B, N, D] (float,
D static, N a square grid): dims the program exported as dynamic (torch.export.Dim) stay dynamic in ONNX and in
the engines' profiles, static ones stay fixed.
"""

import io
import json
import os
import zipfile
from pathlib import Path

import torch

from ..util.errors import NtcError
from .foreign import ForeignTokenModel

METADATA_FILE = "ntc-export.json"
ARCH = "torch.export"
_TEXT = ("archive_format", "archive_version", "byteorder", ".data/version", ".data/serialization_id")


def _member_kind(name: str) -> str:
    """'json', 'tensor', 'pickle' (sample inputs) or 'extra' for a member path below the archive's root folder."""
    if name in _TEXT or (name.startswith("models/") and name.endswith(".json")) or name.endswith("_config.json"):
        return "json"
    if name.startswith("data/sample_inputs/") and name.endswith(".pt"):
        return "pickle"
    if name.startswith("extra/"):
        return "extra"
    if name.startswith(("data/weights/", "data/constants/")) and not name.endswith(".pt"):
        return "tensor"
    return "refused"


def _check_payload_config(path: Path, name: str, text: bytes) -> None:
    """Weights/constants configs: every payload raw tensor bytes (no pickled tensors, torchbind or opaque objects)."""
    try:
        config = json.loads(text).get("config", {})
    except (ValueError, AttributeError):
        raise NtcError(f"{path}: {name} is not a payload config") from None
    for fqn, meta in config.items():
        if not isinstance(meta, dict) or meta.get("use_pickle") or not str(meta.get("path_name", "")).startswith(
                ("weight_", "tensor_")):
            raise NtcError(f"{path}: refuses {fqn!r} in {name}: a pickled payload or Python object (only tensors "
                           "stored as raw bytes are loaded)")


def check_archive(path: Path) -> None:
    """NtcError unless every member of the .pt2 is one we can read without running pickled code."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise NtcError(f"{path}: not a torch.export archive ({e})") from None
    with archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        roots = {n.split("/", 1)[0] for n in names}
        if len(roots) != 1 or not any(n.endswith("/archive_format") for n in names):
            raise NtcError(f"{path}: not a torch.export archive (write it with torch.export.save)")
        for full in names:
            name = full.split("/", 1)[1]
            kind = _member_kind(name)
            if kind == "refused":
                raise NtcError(f"{path}: refuses member {name!r} (native code or pickled Python objects are not "
                               "loaded; save the program with torch.export.save, without AOTInductor packages)")
            if name.endswith("_config.json") and name.startswith(("data/weights/", "data/constants/")):
                _check_payload_config(path, name, archive.read(full))
            if kind == "pickle":
                try:
                    torch.load(io.BytesIO(archive.read(full)), map_location="cpu", weights_only=True)
                except Exception as e:  # torch raises UnpicklingError, RuntimeError, ... for foreign pickles
                    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    raise NtcError(f"{path}: refuses {name!r}: it holds more than tensors ({first[:160]})") from None


class ExportedProgramModel(ForeignTokenModel):
    """A loaded torch.export program with the token-model interface the toolchain asks for."""

    arch = ARCH

    def __init__(self, program, meta: dict, source: str):
        super().__init__()
        self.program = program
        # unflattened: the program's own submodules run (and can be hooked) under their original names
        object.__setattr__(self, "graph_module", torch.export.unflatten(program))
        user_inputs = list(program.graph_signature.user_inputs)
        if len(user_inputs) != 1:
            raise NtcError(f"{source}: the program takes {len(user_inputs)} inputs; the toolchain feeds one input "
                           "of patch tokens [B, N, D]")
        spec = next(n.meta["val"] for n in program.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0])
        dims = [d if isinstance(d, int) else None for d in spec.shape]  # None: exported as dynamic
        self.set_input(dims if spec.dtype.is_floating_point else [], source, f"the program's input ({spec.dtype})")
        n_out = len(program.graph_signature.user_outputs)
        self.input_names = list(meta.get("input_names") or [user_inputs[0]])
        self.output_names = list(meta.get("output_names") or (["tokens_out"] if n_out == 1 else
                                                               [f"output_{i}" for i in range(n_out)]))
        if len(self.input_names) != 1 or len(self.output_names) != n_out:
            raise NtcError(f"{source}: {METADATA_FILE} names {len(self.input_names)} inputs and "
                           f"{len(self.output_names)} outputs; the program has 1 and {n_out}")
        self.config = {"source": source, "input": self.input_shape, "input_names": self.input_names,
                       "output_names": self.output_names}

    def forward(self, tokens):
        return self.graph_module(tokens)

    def named_modules(self, *args, **kwargs):
        """The program's module tree (names as in the user's model: what per-layer drift matches)."""
        return self.graph_module.named_modules(*args, **kwargs)

    def train(self, mode: bool = True):
        """The program is frozen in the mode it was exported in (its module refuses train())."""
        self.training = mode
        return self


def load_program(path: str | os.PathLike) -> ExportedProgramModel:
    """Check, then load a `.pt2` written by torch.export.save. Every problem is a one-line NtcError."""
    from ..ops.bc_decode import custom_op  # noqa: F401  (programs may call torch.ops.ntc.bc_decode)

    path = Path(path)
    if not path.exists():
        raise NtcError(f"{path}: no such torch.export program")
    check_archive(path)
    extra = {METADATA_FILE: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as e:  # deserialization raises many types (unknown ops, schema versions, ...)
        raise NtcError(f"{path}: torch.export.load failed ({(str(e).strip().splitlines() or [''])[0][:200]})") from None
    try:
        meta = json.loads(extra[METADATA_FILE]) if extra[METADATA_FILE] else {}
    except ValueError:
        raise NtcError(f"{path}: {METADATA_FILE} is not JSON") from None
    if not isinstance(meta, dict):
        raise NtcError(f"{path}: {METADATA_FILE} must be a JSON object")
    return ExportedProgramModel(program, meta, path.name).eval()
