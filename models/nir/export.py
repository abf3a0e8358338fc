"""Trained torch models → NIR graphs, through nirtorch's `torch_to_nir` with our module maps.

Why a step chain: nirtorch traces with torch.fx and accepts only module calls and additions (REFERENCE.md §4.3),
so we trace a module that calls the network's layers once, in order; the T-step loop and the mean over steps
are not graph structure but the `steps_per_token`/`readout` metadata plus each BiSpike's α[T].
Standard NIR nodes where they are exact (`Affine`, `Flatten`), extension nodes where NIR lacks a primitive.

`export_any` is the CLI's entry: it dispatches on a checkpoint's `family` key to this module (BiSpikeMLP and
its ANN twin), `export_spikegpt`, `export_spikellm` and `export_spikelm`. The language-model exporters do not trace with
nirtorch; `builder.py` says why.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import torch
from torch import nn

from spikestack.errors import SpikestackError
from spikestack.outputs import atomic_write

from ..bispike import RESET_SCALE, ElasticBiSpike
from ..bispike_mlp import BiSpikeMLP
from .builder import GraphBuilder, linear_node
from .nodes import BiSpike, Embedding
from .ops import GELU


class _StepChain(nn.Module):
    """The BiSpikeMLP's layers called once in order (one time step), for tracing."""

    def __init__(self, model: BiSpikeMLP) -> None:
        super().__init__()
        self.emb, self.flatten = model.emb, model.flatten
        self.spike1, self.fc1 = model.spike1, model.fc1
        self.spike2, self.fc2 = model.spike2, model.fc2
        self.spike3, self.head = model.spike3, model.head

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.emb(ids))
        return self.head(self.spike3(self.fc2(self.spike2(self.fc1(self.spike1(x))))))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


def _module_map(context: int, emb_dim: int, sizes: dict[int, int]) -> dict:
    """Module type → NIR node; `sizes` gives each spiking site's channel count by module id."""
    return {
        nn.Embedding: lambda m: Embedding(weight=_np(m.weight), context=context),
        nn.Flatten: lambda m: nir.Flatten(input_type={"input": np.array([context, emb_dim])}, start_dim=0, end_dim=-1),
        # Our own Affine map: nirtorch 2.6's default import map misplaces the bias (REFERENCE.md §4.3).
        nn.Linear: lambda m: nir.Affine(weight=_np(m.weight), bias=_np(m.bias)),
        ElasticBiSpike: lambda m: BiSpike(
            alpha=_np(m.alpha), levels=m.levels, reset_scale=RESET_SCALE, shape=np.array([sizes[id(m)]])
        ),
    }


def bispike_mlp_to_nir(model: BiSpikeMLP) -> nir.NIRGraph:
    """Export a trained BiSpikeMLP; metadata carries the step count and the readout rule."""
    import nirtorch

    cfg = model.cfg
    if not cfg.spiking:
        raise ValueError("the ANN twin has no spiking sites to export; export the spiking checkpoint")
    d_in = cfg.context * cfg.emb_dim
    sizes = {id(model.spike1): d_in, id(model.spike2): cfg.hidden, id(model.spike3): cfg.hidden}
    graph = nirtorch.torch_to_nir(_StepChain(model), _module_map(cfg.context, cfg.emb_dim, sizes))
    graph.metadata = {
        "spikestack.family": "bispike-mlp",
        "spikestack.steps_per_token": cfg.steps,
        "spikestack.readout": "mean_over_steps",
        "spikestack.vocab_size": cfg.vocab,
        "spikestack.time_axis": "steps",
    }
    return graph


def export_checkpoint(ckpt_path: Path, out_path: Path) -> nir.NIRGraph:
    """Checkpoint → NIR file (written with stock `nir.write`); returns the graph."""
    from ..bispike_mlp import load_checkpoint

    model, _ = load_checkpoint(ckpt_path)
    graph = bispike_mlp_to_nir(model)
    atomic_write(out_path, lambda tmp: nir.write(str(tmp), graph))
    return graph


def bispike_mlp_ann_to_nir(model: BiSpikeMLP) -> nir.NIRGraph:
    """The ANN twin: emb → flatten → fc1 → GELU → fc2 → GELU → head, one step (its spike1 is the identity)."""
    cfg = model.cfg
    b = GraphBuilder()
    b.add("input", nir.Input(input_type={"input": np.array([cfg.context])}))
    b.add("emb", Embedding(weight=_np(model.emb.weight), context=cfg.context), "input")
    x = b.add("flatten", nir.Flatten(input_type={"input": np.array([cfg.context, cfg.emb_dim])}, start_dim=0,
                                     end_dim=-1), "emb")
    x = b.add("gelu2", GELU(shape=[cfg.hidden]), b.add("fc1", linear_node(model.fc1), x))
    x = b.add("gelu3", GELU(shape=[cfg.hidden]), b.add("fc2", linear_node(model.fc2), x))
    head = b.add("head", linear_node(model.head), x)
    b.add("output", nir.Output(output_type={"output": np.array([cfg.vocab])}), head)
    return b.graph({"spikestack.family": "bispike-mlp", "spikestack.steps_per_token": 1,
                    "spikestack.readout": "mean_over_steps", "spikestack.vocab_size": cfg.vocab,
                    "spikestack.time_axis": "steps", "spikestack.spiking": 0})


def model_to_nir(family: str, ckpt_path: Path) -> nir.NIRGraph:
    """Load a checkpoint of `family` and export it (spiking model or ANN twin)."""
    if family == "bispike-mlp":
        from ..bispike_mlp import load_checkpoint

        model, _ = load_checkpoint(ckpt_path)
        return bispike_mlp_to_nir(model) if model.cfg.spiking else bispike_mlp_ann_to_nir(model)
    if family == "spikegpt":
        from ..spikegpt import load_checkpoint as load_spikegpt
        from .export_spikegpt import spikegpt_to_nir

        return spikegpt_to_nir(load_spikegpt(ckpt_path)[0])
    if family == "spikellm":
        from ..spikellm import load_checkpoint as load_spikellm
        from .export_spikellm import spikellm_to_nir

        return spikellm_to_nir(load_spikellm(ckpt_path)[0])
    if family in ("spikelm-enc", "spikelm-dec"):
        from ..spikelm import load_checkpoint as load_spikelm
        from .export_spikelm import spikelm_to_nir

        return spikelm_to_nir(load_spikelm(ckpt_path)[0])
    raise SpikestackError(f"{ckpt_path}: no NIR exporter for model family {family!r} yet")


def checkpoint_to_nir(ckpt_path: Path) -> nir.NIRGraph:
    """Any shipped checkpoint → its NIR graph, dispatching on the checkpoint's `family` key; the checkpoint's
    tokenizer travels in the graph's metadata (export_tokenizer.py)."""
    from ..checkpoint import read_checkpoint
    from ..registry import checkpoint_family
    from .export_tokenizer import attach_tokenizer

    graph = model_to_nir(checkpoint_family(ckpt_path), ckpt_path)
    return attach_tokenizer(graph, read_checkpoint(ckpt_path))  # read again: memory-mapped, and checked by now


def export_any(ckpt_path: Path, out_path: Path) -> nir.NIRGraph:
    """Any shipped checkpoint → NIR file (stock `nir.write`), dispatching on its `family` key; returns the graph.

    Errors (unknown family, unreadable checkpoint, an output that is the checkpoint itself or a folder) are
    SpikestackError with the path in the message. The file is written to a temporary sibling and renamed into
    place, so a failed export leaves an existing file untouched and no partial one.
    """
    ckpt_path, out_path = Path(ckpt_path), Path(out_path)
    if out_path.exists() and ckpt_path.exists() and out_path.samefile(ckpt_path):
        raise SpikestackError(f"{out_path}: is the checkpoint being exported; refusing to overwrite it")
    if out_path.is_dir():
        raise SpikestackError(f"{out_path}: is a folder; give the NIR file's name")
    graph = checkpoint_to_nir(ckpt_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out_path, lambda tmp: nir.write(str(tmp), graph))
    return graph
