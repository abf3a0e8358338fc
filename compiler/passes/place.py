"""place: put cores on the 2-D mesh so that hop-weighted traffic is small.

Traffic between two cores = number of routes (presynaptic neuron → destination core) between them, from the
synapse structure; a route carries one message per spike, and each message costs |Δx| + |Δy| hops under X-Y
routing. Two placements are computed and the cheaper one kept (ties: min-cut):

* serpentine: cores in topological order along a boustrophedon walk of tiles (the classic snake mapping of
  pipelined layers; optimal-ish for chains);
* min-cut recursive bisection (Breuer 1977): split the tile rectangle in half along its longer side, split the
  cores with Kernighan–Lin (`networkx.algorithms.community.kernighan_lin_bisection`, fixed seed) into groups
  that fit each half, recurse until a tile.

Cores beyond one chip (a multi-chip system: the target's chips_x × chips_y chip mesh) keep traffic local across
chips in two steps, both deterministic:

* cut: cores stay in topological order and fill the fewest chips; where the last chip has room to spare, the
  chip boundaries slide back (each by at most that slack) to the cut positions that the fewest routes cross
  (`chip_cuts`: a dynamic programme over the boundaries; with no traffic to save, chips fill up in order);
* walk: chip k sits at the k-th position of a serpentine walk of the chip mesh (`serpentine` on chips), so
  consecutive chips, and hence producer → consumer layers, are neighbours one chip link apart.

Each chip's cores are then placed on its tiles as above, and a core's (x, y) is its tile on the whole system's
tile grid (chip position × chip mesh + tile), where X-Y routing crosses chip boundaries. The report records both
costs and, for a multi-chip placement, the chips, the routes between chips and their mean chip-link hops (a
one-chip placement reports exactly what it always did).
"""

from __future__ import annotations

import math
from dataclasses import replace

import networkx as nx
import numpy as np
from networkx.algorithms.community import kernighan_lin_bisection

from spikestack.errors import TargetLimitError

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
                if routes and src.index != dst.index:  # a recurrent core's routes to itself cost no hops
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


def _assign(cores: tuple[Core, ...], tiles: dict[int, Tile], target: Target, chip: int,
            origin: Tile) -> list[Core]:
    slots: dict[Tile, int] = {}
    placed = []
    for core in cores:
        tile = tiles[core.index]
        slot = slots.get(tile, 0)
        slots[tile] = slot + 1
        placed.append(replace(core, chip=chip, x=tile[0] + origin[0] * target.mesh_x,
                              y=tile[1] + origin[1] * target.mesh_y, slot=slot))
    return placed


def cut_routes(g: nx.Graph, n: int) -> np.ndarray:
    """Routes crossing a cut before core position i (cores [0, i) | [i, n)), for i in 0..n: a difference array
    over the traffic graph's edges (core index = position in topological order)."""
    diff = np.zeros(n + 2, np.int64)
    for a, b, d in g.edges(data=True):
        lo, hi = min(a, b), max(a, b)
        diff[lo + 1] += d["weight"]
        diff[hi + 1] -= d["weight"]
    return np.cumsum(diff)[:n + 1]


def chip_cuts(cost: np.ndarray, n: int, per_chip: int) -> list[int]:
    """Core positions where chips 1, 2, … begin: the fewest chips, each at most `per_chip` cores, with the least
    total cut cost. Why the search is small: with m chips and slack s = m·per_chip − n, boundary k lies at
    k·per_chip − a_k with 0 ≤ a_1 ≤ … ≤ a_{m−1} ≤ s (a chip holds per_chip − a_k + a_{k−1} ≤ per_chip cores), so a
    prefix-minimum over the offsets per boundary finds the optimum in O(m·s). Ties keep the smaller offset, so
    with nothing to save chips fill up in order. A route crossing k boundaries counts k times: chips follow a
    serpentine walk, where chips k apart are at most k chip links apart."""
    m = math.ceil(n / per_chip)
    if m <= 1:
        return []
    slack = m * per_chip - n
    offsets = np.arange(slack + 1)
    best = cost[per_chip - offsets].astype(np.int64)
    choices = []  # per boundary k ≥ 2: for each offset a, the best offset of boundary k − 1 (≤ a)
    for k in range(2, m):
        run_min = np.minimum.accumulate(best)
        arg = np.zeros(slack + 1, np.int64)
        for a in range(1, slack + 1):  # first index of the running minimum: ties keep the smaller offset
            arg[a] = arg[a - 1] if best[arg[a - 1]] <= best[a] else a
        choices.append(arg)
        best = run_min + cost[k * per_chip - offsets]
    picked = [int(np.argmin(best))]
    for arg in reversed(choices):
        picked.append(int(arg[picked[-1]]))
    picked.reverse()
    return [k * per_chip - a for k, a in enumerate(picked, start=1)]


def _chip_report(g: nx.Graph, placed: list[Core], target: Target) -> dict:
    """Chips used, routes between chips and their mean chip-link hops (X-Y across the chip mesh)."""
    at = {c.index: (c.x // target.mesh_x, c.y // target.mesh_y) for c in placed}
    between = chip_hops = 0
    for a, b, d in g.edges(data=True):
        hops = abs(at[a][0] - at[b][0]) + abs(at[a][1] - at[b][1])
        if hops:
            between += d["weight"]
            chip_hops += d["weight"] * hops
    return {"chips": len({c.chip for c in placed}), "chip_mesh": [target.chips_x, target.chips_y],
            "routes_between_chips": between, "chip_hop_weighted_routes": chip_hops,
            "mean_chip_hops": chip_hops / between if between else 0.0}


def place(program: Program, target: Target) -> Program:
    g = traffic_graph(program)
    placed: list[Core] = []
    costs = {"serpentine": 0, "mincut": 0}
    chosen = []
    n = len(program.cores)
    per_chip = target.cores_per_chip
    bounds = [0, *chip_cuts(cut_routes(g, n), n, per_chip), n]
    if len(bounds) - 1 > target.chips:
        raise TargetLimitError(f"program needs {n} cores, more than {per_chip * target.chips} on the "
                               f"{target.chips} chips of {target.name}")
    walk_chips = serpentine(target.chips_x, target.chips_y)
    for chip, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        chip_cores = program.cores[lo:hi]
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
        placed += _assign(chip_cores, best[1], target, chip, walk_chips[chip])
    placement = {"chosen_per_chip": chosen, "hop_weighted_routes": costs}
    if len(chosen) > 1:
        placement.update(_chip_report(g, placed, target))
    report = dict(program.report, placement=placement)
    return replace(program, cores=tuple(placed), report=report)
