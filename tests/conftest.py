"""Shared fixtures: small seeded graphs (from `spikestack.models.nir.synthetic`) and their compiled programs."""

from __future__ import annotations

import nir
import numpy as np
import pytest
from spikestack.models.nir.synthetic import bispike_chain, lif_chain
from spikestack.models.threads import one_torch_thread


def make_nir_chain(seed: int = 0, vocab: int = 11, context: int = 2, emb: int = 3, hidden: int = 5,
                   out: int = 7, steps: int = 4, levels: int = 1) -> nir.NIRGraph:
    """Input → Embedding → Flatten → BiSpike → Affine → BiSpike → Affine → Output, random but seeded."""
    return bispike_chain(seed=seed, vocab=vocab, context=context, emb=emb, hidden=(hidden,), out=out, steps=steps,
                         levels=levels)


def make_lif_graph(seed: int = 0, n_in: int = 10, hidden: int = 12, out: int = 4, steps: int = 40,
                   tau: tuple[float, float] = (1e-3, 2e-3), second: str = "LIF", first: str = "LIF",
                   delay_steps: np.ndarray | None = None) -> nir.NIRGraph:
    """Input → Affine → LIF|Threshold → [Delay] → Linear → LIF|CubaLIF|IF|LI → Output (dt = 1e-4 s)."""
    return lif_chain(seed=seed, n_in=n_in, hidden=hidden, out=out, steps=steps, tau=tau, first=first,
                     second=second, delay_steps=delay_steps)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test on one torch thread (models/threads.py says why); CI's 2 cores are shared."""
    with one_torch_thread():
        yield


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
