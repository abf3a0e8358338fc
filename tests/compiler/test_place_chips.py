"""Placement one chip at a time (compiler/passes/place.py `traffic_blocks`, `add_routes`): the same cores, tiles and
report as the placement on one networkx graph of the whole program's routes, which is what it replaced (a 7B
program's 23 million core pairs do not fit in memory as one graph)."""

from __future__ import annotations

import math
from dataclasses import replace

import networkx as nx
import numpy as np
import pytest
from networkx.algorithms.community import kernighan_lin_bisection
from spikestack.compiler.from_nir import from_nir
from spikestack.compiler.passes import place as pl
from spikestack.compiler.passes.fold_amplitudes import fold_amplitudes
from spikestack.compiler.passes.partition import partition
from spikestack.compiler.passes.quantize import quantize
from spikestack.compiler.targets import load_target

from tests.compiler.test_multichip import three_chip_program
from tests.conftest import make_nir_chain

LOIHI2 = load_target("loihi2")


def networkx_mincut(g, cores, x0, y0, w, h, per_tile, out) -> None:
    """place.py's min-cut recursion as it was: networkx's Kernighan–Lin and cut size on subgraph views of `g`."""
    if not cores:
        return
    if w * h == 1 or len(cores) <= per_tile:
        out.update({c: (x0, y0) for c in cores})
        return
    rects = (((x0, y0, w // 2, h), (x0 + w // 2, y0, w - w // 2, h)) if w >= h else
             ((x0, y0, w, h // 2), (x0, y0 + h // 2, w, h - h // 2)))
    cap_a, cap_b = (r[2] * r[3] * per_tile for r in rects)
    n = len(cores)
    lo, hi = max(0, n - cap_b), min(cap_a, n)
    sub = g.subgraph(cores)
    best = None
    for n_a in sorted({lo, hi, min(hi, max(lo, math.ceil(n * cap_a / (cap_a + cap_b))))}):
        part_a, part_b = init = (set(cores[:n_a]), set(cores[n_a:]))
        if 0 < n_a < n:
            kl_a, kl_b = kernighan_lin_bisection(sub, partition=init, weight="weight", seed=0)
            if len(kl_a) <= cap_a and len(kl_b) <= cap_b:
                part_a, part_b = kl_a, kl_b
        cut = nx.cut_size(sub, part_a, part_b, weight="weight") if part_a and part_b else 0
        if best is None or cut < best[0]:
            best = (cut, set(part_a), set(part_b))
    order = {c: i for i, c in enumerate(cores)}
    networkx_mincut(g, sorted(best[1], key=order.get), *rects[0], per_tile, out)
    networkx_mincut(g, sorted(best[2], key=order.get), *rects[1], per_tile, out)


def whole_graph_place(program, target) -> list:
    """The placement as computed before chips got their own graphs: every route in one graph, Kernighan–Lin on
    subgraph views of it."""
    g = pl.traffic_graph(program)
    n = len(program.cores)
    bounds = [0, *pl.chip_cuts(pl.cut_routes(g, n), n, target.cores_per_chip), n]
    walk_chips = pl.serpentine(target.chips_x, target.chips_y)
    placed = []
    for chip, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        chip_cores = program.cores[lo:hi]
        walk = pl.serpentine(target.mesh_x, target.mesh_y)
        snake = {c.index: walk[i // target.cores_per_tile] for i, c in enumerate(chip_cores)}
        cut: dict = {}
        w, h = pl._smallest_rect(len(chip_cores), target)
        networkx_mincut(g, [c.index for c in chip_cores], 0, 0, w, h, target.cores_per_tile, cut)
        sub = g.subgraph(snake)
        best = cut if pl.hop_cost(sub, cut) <= pl.hop_cost(sub, snake) else snake
        placed += pl._assign(chip_cores, best, target, chip, walk_chips[chip])
    return placed


def chain_program(seed: int, hidden: int, max_neurons: int):
    target = replace(load_target("hala_point"), max_neurons=max_neurons)
    graph = make_nir_chain(seed=seed, emb=24, hidden=hidden, out=40)
    return partition(quantize(fold_amplitudes(from_nir(graph)), LOIHI2), target), target


@pytest.mark.parametrize(("seed", "hidden", "max_neurons"), [(0, 300, 2), (1, 500, 1), (2, 60, 1)])
def test_chip_graphs_place_as_the_whole_graph(seed, hidden, max_neurons):
    program, target = chain_program(seed, hidden, max_neurons)
    placed = pl.place(program, target)
    chips = len({c.chip for c in placed.cores})
    assert chips == -(-len(program.cores) // target.cores_per_chip) and (chips > 1 or hidden == 60)
    assert list(placed.cores) == whole_graph_place(program, target)


def test_block_sums_equal_the_graph_sums():
    program, target = chain_program(0, 300, 2)
    blocks = pl.traffic_blocks(program)
    g = pl.traffic_graph(program)
    n = len(program.cores)
    assert np.array_equal(pl.block_cut_routes(blocks, n), pl.cut_routes(g, n))
    assert sum(int(b.routes.sum()) for b in blocks) == int(g.size(weight="weight"))
    # the by-hand program of test_multichip: same cut costs through blocks
    small = three_chip_program()
    assert pl.block_cut_routes(pl.traffic_blocks(small), 10).tolist() == [0, 1, 2, 4, 6, 8, 10, 12, 8, 4, 0]


def test_chip_report_by_hand():
    placed = pl.place(*chain_program(0, 300, 2)[::-1][::-1])
    report = placed.report["placement"]
    at = {c.index: (c.x // 8, c.y // 4) for c in placed.cores}  # hala_point: 8 x 4 tiles per chip
    g = pl.traffic_graph(placed)
    between = sum(d["weight"] for a, b, d in g.edges(data=True) if at[a] != at[b])
    hops = sum(d["weight"] * (abs(at[a][0] - at[b][0]) + abs(at[a][1] - at[b][1])) for a, b, d in g.edges(data=True))
    assert report["routes_between_chips"] == between > 0
    assert report["chip_hop_weighted_routes"] == hops
