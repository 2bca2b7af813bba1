"""TorchRunner: golden outputs from a PyTorch module, with the same interface as every runner:
`run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]`."""

import numpy as np
import torch


class TorchRunner:
    """Golden outputs from the PyTorch module (fp32, eval mode, no grad)."""

    backend = "pytorch"

    def __init__(self, module: torch.nn.Module, input_names=("tokens",), output_names=None):
        self.module = module.eval()
        self.input_names = list(input_names)
        self.output_names = list(output_names or getattr(module, "output_names", ["output"]))

    @torch.inference_mode()
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names]
        out = self.module(*args)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {n: o.float().numpy() for n, o in zip(self.output_names, outs)}
