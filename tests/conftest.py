"""Shared fixtures: small hand-built float graphs and compiled programs (no checkpoint needed)."""

from __future__ import annotations

import nir
import numpy as np
import pytest
from spikestack.models.nir.nodes import BiSpike, Embedding


def make_nir_chain(seed: int = 0, vocab: int = 11, context: int = 2, emb: int = 3, hidden: int = 5,
                   out: int = 7, steps: int = 4, levels: int = 1) -> nir.NIRGraph:
    """Input → Embedding → Flatten → BiSpike → Affine → BiSpike → Affine → Output, random but seeded."""
    rng = np.random.default_rng(seed)
    d_in = context * emb
    alpha = lambda: np.sort(rng.uniform(0.5, 2.0, steps))  # noqa: E731
    nodes = {
        "ids": nir.Input(input_type={"input": np.array([context])}),
        "emb": Embedding(weight=rng.normal(0, 1.5, (vocab, emb)), context=context),
        "flat": nir.Flatten(input_type={"input": np.array([context, emb])}, start_dim=0, end_dim=-1),
        "s1": BiSpike(alpha=alpha(), levels=levels, reset_scale=0.25, shape=np.array([d_in])),
        "fc1": nir.Affine(weight=rng.normal(0, 0.6, (hidden, d_in)), bias=rng.normal(0, 0.2, hidden)),
        "s2": BiSpike(alpha=alpha(), levels=levels, reset_scale=0.25, shape=np.array([hidden])),
        "head": nir.Affine(weight=rng.normal(0, 0.6, (out, hidden)), bias=rng.normal(0, 0.2, out)),
        "out": nir.Output(output_type={"output": np.array([out])}),
    }
    names = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:], strict=False)))
    graph.metadata = {"spikestack.steps_per_token": steps}
    return graph


@pytest.fixture
def nir_chain() -> nir.NIRGraph:
    return make_nir_chain()


@pytest.fixture
def program(nir_chain):
    from spikestack.compiler.pipeline import compile_graph

    return compile_graph(nir_chain, "loihi2")


@pytest.fixture
def token_ids() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 11, size=(40, 2))


def make_lif_graph(seed: int = 0, n_in: int = 10, hidden: int = 12, out: int = 4, steps: int = 40,
                   tau: tuple[float, float] = (1e-3, 2e-3), second: str = "LIF", first: str = "LIF",
                   delay_steps: np.ndarray | None = None) -> nir.NIRGraph:
    """A foreign NIR graph of plain primitives:
    Input → Affine → LIF|Threshold → [Delay] → Linear → LIF|CubaLIF|IF|LI → Output (dt = 1e-4 s)."""
    rng = np.random.default_rng(seed)
    lif = lambda n, t, leak: nir.LIF(tau=np.full(n, t), r=np.ones(n), v_leak=np.full(n, leak),  # noqa: E731
                                     v_threshold=np.ones(n), v_reset=np.zeros(n))
    last = {
        "LIF": lif(out, tau[1], 0.2),
        "CubaLIF": nir.CubaLIF(tau_syn=np.full(out, 5e-4), tau_mem=np.full(out, tau[1]), r=np.ones(out),
                               v_leak=np.full(out, 0.2), v_threshold=np.ones(out), v_reset=np.zeros(out),
                               w_in=np.full(out, 30.0)),
        "IF": nir.IF(r=np.full(out, 3000.0), v_threshold=np.ones(out), v_reset=np.zeros(out)),
        "LI": nir.LI(tau=np.full(out, tau[1]), r=np.ones(out), v_leak=np.zeros(out)),
    }[second]
    hidden_node = lif(hidden, tau[0], 0.0) if first == "LIF" else nir.Threshold(threshold=np.full(hidden, 0.5))
    w_in = rng.normal(0, 3 if first == "LIF" else 0.6, (hidden, n_in))
    nodes = [nir.Input(input_type={"input": np.array([n_in])}),
             nir.Affine(weight=w_in, bias=rng.normal(0, 2 if first == "LIF" else 0.2, hidden)), hidden_node]
    if delay_steps is not None:
        nodes.append(nir.Delay(delay=np.asarray(delay_steps, np.float64) * 1e-4))
    nodes += [nir.Linear(weight=rng.normal(0, 3, (out, hidden))), last,
              nir.Output(output_type={"output": np.array([out])})]
    graph = nir.NIRGraph.from_list(*nodes)
    graph.metadata = {"spikestack.steps_per_sample": steps}
    return graph
