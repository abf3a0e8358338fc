"""Seeded synthetic NIR graphs, for tests, benchmarks and examples (no checkpoint needed).

* `bispike_chain`: Input → spikestack.Embedding → Flatten → BiSpike → (Affine → BiSpike)* → Affine → Output, the
  shape of the spine network (token timing).
* `lif_chain`: a foreign graph of plain `nir` primitives, Input → Affine → LIF|Threshold → [Delay] → Linear →
  LIF|CubaLIF|IF|LI → Output (delayed timing, dt = 1e-4 s).

Random draws happen in a fixed order, so a seed always gives the same graph.
"""

from __future__ import annotations

import nir
import numpy as np

from .nodes import BiSpike, Embedding


def bispike_chain(*, seed: int = 0, vocab: int = 11, context: int = 2, emb: int = 3, hidden: tuple[int, ...] = (5,),
                  out: int = 7, steps: int = 4, levels: int = 1, weight_std: float | None = 0.6,
                  bias_std: float = 0.2, dtype: type = np.float64) -> nir.NIRGraph:
    """`hidden` lists the widths after the first spiking layer (whose width is context · emb);
    weight_std None scales each layer's weights by fan-in^-1/2."""
    rng = np.random.default_rng(seed)
    d_in = context * emb

    def alpha() -> np.ndarray:
        return np.sort(rng.uniform(0.5, 2.0, steps))

    def affine(n_out: int, n_in: int) -> nir.Affine:
        std = weight_std if weight_std is not None else n_in ** -0.5
        return nir.Affine(weight=rng.normal(0, std, (n_out, n_in)).astype(dtype),
                          bias=rng.normal(0, bias_std, n_out).astype(dtype))

    nodes: dict[str, nir.NIRNode] = {
        "ids": nir.Input(input_type={"input": np.array([context])}),
        "emb": Embedding(weight=rng.normal(0, 1.5, (vocab, emb)).astype(dtype), context=context),
        "flat": nir.Flatten(input_type={"input": np.array([context, emb])}, start_dim=0, end_dim=-1),
        "s1": BiSpike(alpha=alpha(), levels=levels, reset_scale=0.25, shape=np.array([d_in])),
    }
    width = d_in
    for i, n in enumerate(hidden, start=1):
        nodes[f"fc{i}"] = affine(n, width)
        nodes[f"s{i + 1}"] = BiSpike(alpha=alpha(), levels=levels, reset_scale=0.25, shape=np.array([n]))
        width = n
    nodes["head"] = affine(out, width)
    nodes["out"] = nir.Output(output_type={"output": np.array([out])})
    names = list(nodes)
    graph = nir.NIRGraph(nodes=nodes, edges=list(zip(names[:-1], names[1:], strict=True)))
    graph.metadata = {"spikestack.steps_per_token": steps}
    return graph


def lif_chain(*, seed: int = 0, n_in: int = 10, hidden: int = 12, out: int = 4, steps: int = 40,
              tau: tuple[float, float] = (1e-3, 2e-3), first: str = "LIF", second: str = "LIF",
              delay_steps: np.ndarray | None = None) -> nir.NIRGraph:
    rng = np.random.default_rng(seed)

    def lif(n: int, t: float, leak: float) -> nir.LIF:
        return nir.LIF(tau=np.full(n, t), r=np.ones(n), v_leak=np.full(n, leak), v_threshold=np.ones(n),
                       v_reset=np.zeros(n))

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
