"""Optimal Brain Spiking for SpikeLLM (REFERENCE.md §2.2): which input channels of each SpikeLinear are salient.

Place in the picture (STYLE.md): a *models/* step between training phases (`spikellm_train` calls it when it
switches from the float to the spiking path).

Optimal Brain Spiking (§2.2): `calibrate_saliency` scores input channel j of each SpikeLinear by the mean
over tokens of [(x WᵀW) ⊙ x]_j on float (ANN-path) activations and marks the top fraction salient; masks are
buffers and save in the state dict. q, k and v read the same normed input but have their own masks (their W
differ), so a compiler sees that input coded three times, once per mask.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .spikellm_network import SpikeLLM, SpikeLLMError
from .spikellm_neurons import SpikeLinear


@torch.no_grad()
def calibrate_saliency(model: SpikeLLM, sample_ids: Tensor, salient_fraction: float) -> dict[str, Tensor]:
    """Mark the top `salient_fraction` input channels of every SpikeLinear salient (REFERENCE.md §2.2).

    Score of channel j = mean over samples and tokens of [(x WᵀW) ⊙ x]_j, the gradient of ½‖xWᵀ‖² times the
    input, on float activations (quantizers off, so the score does not depend on the masks being chosen).
    Ranked by the signed mean, as in the reference; ties broken by channel index. Returns the scores by layer
    name and writes `salient_mask` buffers (round(fraction · in_features) channels each).
    """
    if not 0.0 <= salient_fraction <= 1.0:
        raise SpikeLLMError(f"salient_fraction must be in [0, 1], got {salient_fraction}")
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}

    def hook(name: str, layer: SpikeLinear):
        def record(_module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            x = inputs[0].reshape(-1, layer.in_features)
            # x Wᵀ is the layer's own float output when it has no bias (F.linear folds x to 2-D and calls the same
            # matrix product as `x @ W.T`, so the same floats): one of the score's two products for free, half its
            # cost at LLaMA-7B (1,024 tokens × 4,096 × 11,008 per product)
            xw = output.reshape(-1, layer.out_features) if layer.bias is None else x @ layer.weight.T
            score = (xw @ layer.weight * x).sum(0)
            sums[name] = sums.get(name, 0) + score.double()
            counts[name] = counts.get(name, 0) + x.shape[0]
        return record

    spiking = {name: layer.spiking for name, layer in model.spike_linears()}
    handles = [layer.register_forward_hook(hook(name, layer)) for name, layer in model.spike_linears()]
    try:
        model.set_spiking(False)
        model(sample_ids)
    finally:
        for handle in handles:
            handle.remove()
        for name, layer in model.spike_linears():
            layer.spiking = spiking[name]
    scores = {name: sums[name] / counts[name] for name in sums}
    for name, layer in model.spike_linears():
        n_salient = round(salient_fraction * layer.in_features)
        order = torch.argsort(-scores[name], stable=True)
        mask = torch.zeros(layer.in_features, dtype=torch.bool)
        mask[order[:n_salient]] = True
        layer.salient_mask.copy_(mask)
    return scores
