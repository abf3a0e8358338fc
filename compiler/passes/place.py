"""place: put cores on the 2-D mesh so that hop-weighted traffic is small.

Traffic between two cores = number of routes (presynaptic neuron → destination core) between them, from the
synapse structure; a route carries one message per spike, and each message costs |Δx| + |Δy| hops under X-Y
routing. Two placements are computed and the cheaper one kept (ties: min-cut):

* serpentine: cores in topological order along a boustrophedon walk of tiles (the classic snake mapping of
  pipelined layers; optimal-ish for chains);
* min-cut recursive bisection (Breuer 1977): split the tile rectangle in half along its longer side, split the
  cores with Kernighan–Lin (`networkx.algorithms.community.kernighan_lin_bisection`, fixed seed) into groups
  that fit each half, recurse until a tile.

Cores beyond one chip fill chips in topological order (chips abut along x). The report records both costs.
"""

from __future__ import annotations

import math
from dataclasses import replace

import networkx as nx
import numpy as np
from networkx.algorithms.community import kernighan_lin_bisection

from ..ir import Core, Program
from ..targets import Target

Tile = tuple[int, int]


def serpentine(mesh_x: int, mesh_y: int) -> list[Tile]:
    """Tile coordinates row by row, alternating direction, so each tile neighbours the next."""
    walk = []
    for y in range(mesh_y):
        xs = range(mesh_x) if y % 2 == 0 else range(mesh_x - 1, -1, -1)
        walk.extend((x, y) for x in xs)
    return walk


def traffic_graph(program: Program) -> nx.Graph:
    """Undirected core graph; edge weight = routes between the two cores (both directions summed)."""
    g = nx.Graph()
    g.add_nodes_from(c.index for c in program.cores)
    cores_of: dict[str, list[Core]] = {p.name: [] for p in program.populations}
    for c in program.cores:
        if c.pop in cores_of:
            cores_of[c.pop].append(c)
    for proj in program.projections:
        if not cores_of.get(proj.src):  # host-fed projections have no source core: no routes between cores
            continue
        weight = np.asarray(proj.weight)
        # per destination core, the running count of source columns with a synapse into it: the routes from a
        # source core are a difference of two counts (one row-slice scan per destination, not per pair)
        counts = {}
        for dst in cores_of[proj.dst]:
            used = (weight[dst.lo:dst.hi] != 0).any(0)
            counts[dst.index] = np.concatenate([[0], np.cumsum(used, dtype=np.int64)])
        for src in cores_of[proj.src]:
            for dst in cores_of[proj.dst]:
                cum = counts[dst.index]
                n = cum.size - 1
                routes = int(cum[min(src.hi, n)] - cum[min(src.lo, n)])
                if routes:
                    w = g.get_edge_data(src.index, dst.index, {"weight": 0})["weight"]
                    g.add_edge(src.index, dst.index, weight=w + routes)
    return g


def hop_cost(g: nx.Graph, tiles: dict[int, Tile]) -> int:
    return sum(d["weight"] * (abs(tiles[a][0] - tiles[b][0]) + abs(tiles[a][1] - tiles[b][1]))
               for a, b, d in g.edges(data=True))


def _mincut(g: nx.Graph, cores: list[int], x0: int, y0: int, w: int, h: int, per_tile: int,
            out: dict[int, Tile]) -> None:
    if not cores:
        return
    if w * h == 1 or len(cores) <= per_tile:
        for c in cores:
            out[c] = (x0, y0)
        return
    if w >= h:
        wa = w // 2
        rects = ((x0, y0, wa, h), (x0 + wa, y0, w - wa, h))
    else:
        ha = h // 2
        rects = ((x0, y0, w, ha), (x0, y0 + ha, w, h - ha))
    cap_a = rects[0][2] * rects[0][3] * per_tile
    cap_b = rects[1][2] * rects[1][3] * per_tile
    n = len(cores)
    lo, hi = max(0, n - cap_b), min(cap_a, n)
    # Try the proportional split and both extremes as KL's starting sizes; a KL result that no longer fits the
    # halves' capacities is discarded for its starting split (networkx 2.8's KL can move unequal groups' sizes).
    sizes = sorted({lo, hi, min(hi, max(lo, math.ceil(n * cap_a / (cap_a + cap_b))))})
    sub = g.subgraph(cores)
    best: tuple[float, set[int], set[int]] | None = None
    for n_a in sizes:
        init = (set(cores[:n_a]), set(cores[n_a:]))
        part_a, part_b = init
        if 0 < n_a < n:
            kl_a, kl_b = kernighan_lin_bisection(sub, partition=init, weight="weight", seed=0)
            if len(kl_a) <= cap_a and len(kl_b) <= cap_b:
                part_a, part_b = kl_a, kl_b
        cut = nx.cut_size(sub, part_a, part_b, weight="weight") if part_a and part_b else 0
        if best is None or cut < best[0]:
            best = (cut, set(part_a), set(part_b))
    assert best is not None
    _, part_a, part_b = best
    order = {c: i for i, c in enumerate(cores)}
    _mincut(g, sorted(part_a, key=order.get), *rects[0], per_tile, out)
    _mincut(g, sorted(part_b, key=order.get), *rects[1], per_tile, out)


def _smallest_rect(n: int, target: Target) -> tuple[int, int]:
    """The most square tile rectangle (within the chip) that holds n cores."""
    tiles = math.ceil(n / target.cores_per_tile)
    best = (target.mesh_x, target.mesh_y)
    for w in range(1, target.mesh_x + 1):
        h = math.ceil(tiles / w)
        if h <= target.mesh_y and (w * h, abs(w - h)) < (best[0] * best[1], abs(best[0] - best[1])):
            best = (w, h)
    return best


def _assign(cores: tuple[Core, ...], tiles: dict[int, Tile], target: Target, chip: int) -> list[Core]:
    slots: dict[Tile, int] = {}
    placed = []
    for core in cores:
        tile = tiles[core.index]
        slot = slots.get(tile, 0)
        slots[tile] = slot + 1
        placed.append(replace(core, chip=chip, x=tile[0] + chip * target.mesh_x, y=tile[1], slot=slot))
    return placed


def place(program: Program, target: Target) -> Program:
    g = traffic_graph(program)
    placed: list[Core] = []
    costs = {"serpentine": 0, "mincut": 0}
    chosen = []
    # a chip holds at most its cores and at most the slots of its tile mesh (a target may declare either fewer)
    per_chip = min(target.chip_cores, target.mesh_x * target.mesh_y * target.cores_per_tile)
    for chip in range(math.ceil(len(program.cores) / per_chip)):
        chip_cores = program.cores[chip * per_chip:(chip + 1) * per_chip]
        walk = serpentine(target.mesh_x, target.mesh_y)
        snake = {c.index: walk[i // target.cores_per_tile] for i, c in enumerate(chip_cores)}
        cut: dict[int, Tile] = {}
        w, h = _smallest_rect(len(chip_cores), target)
        _mincut(g, [c.index for c in chip_cores], 0, 0, w, h, target.cores_per_tile, cut)
        sub = g.subgraph(snake)
        cost_snake, cost_cut = hop_cost(sub, snake), hop_cost(sub, cut)
        costs["serpentine"] += cost_snake
        costs["mincut"] += cost_cut
        best = ("mincut", cut) if cost_cut <= cost_snake else ("serpentine", snake)
        chosen.append(best[0])
        placed += _assign(chip_cores, best[1], target, chip)
    report = dict(program.report, placement={"chosen_per_chip": chosen, "hop_weighted_routes": costs})
    return replace(program, cores=tuple(placed), report=report)
