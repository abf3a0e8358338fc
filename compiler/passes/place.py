"""place: put cores on the 2-D mesh so that hop-weighted traffic is small.

Traffic between two cores = number of routes (presynaptic neuron → destination core) between them, from the
synapse structure; a route carries one message per spike, and each message costs |Δx| + |Δy| hops under X-Y
routing. Two placements are computed and the cheaper one kept (ties: min-cut):

* serpentine: cores in topological order along a boustrophedon walk of tiles (the classic snake mapping of
  pipelined layers; optimal-ish for chains);
* min-cut recursive bisection (Breuer 1977): split the tile rectangle in half along its longer side, split the
  cores with Kernighan–Lin (networkx 2.8's `kernighan_lin_bisection`, fixed seed) into groups
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

Scale: the whole program's traffic is kept as one route matrix per projection (`traffic_blocks`: LLaMA-7B's 23
million core pairs would take gigabytes as one graph), and each chip is placed on its own routes
(`chip_adjacency`, Kernighan–Lin on plain dicts), with the same result as one networkx graph of every route
(tests/compiler/test_place_chips.py).
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace

import networkx as nx
import numpy as np
from networkx.algorithms.community.kernighan_lin import _kernighan_lin_sweep  # networkx 2.8's, as is

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


@dataclass(frozen=True, slots=True)
class Block:
    """The routes of one projection: `routes[i, j]` from source core `src[i]` to destination core `dst[j]` (core
    indices; 0 where there is none, and on a recurrent core's pair with itself, whose routes cost no hops).

    Why blocks and not one graph of the whole program: LLaMA-7B's 32 decoder blocks give 23 million core pairs,
    gigabytes as a networkx graph, and every use of the whole program's traffic is a sum (cut costs, chip-link
    hops); the graph a placement search walks is one chip's (`chip_adjacency`)."""

    src: np.ndarray
    dst: np.ndarray
    routes: np.ndarray


def traffic_blocks(program: Program) -> list[Block]:
    """One `Block` per projection between cores, in the program's projection order."""
    cores_of: dict[str, list[Core]] = {p.name: [] for p in program.populations}
    for c in program.cores:
        if c.pop in cores_of:
            cores_of[c.pop].append(c)
    blocks = []
    for proj in program.projections:
        srcs, dsts = cores_of.get(proj.src), cores_of[proj.dst]
        if not srcs or not dsts:  # host-fed projections have no source core: no routes between cores
            continue
        weight = np.asarray(proj.weight)
        n = weight.shape[1]
        # per destination core, the running count of source columns with a synapse into it: the routes from a
        # source core are a difference of two counts (one row-slice scan per destination, not per pair)
        counts = np.zeros((len(dsts), n + 1), np.int64)
        for k, dst in enumerate(dsts):
            np.cumsum((weight[dst.lo:dst.hi] != 0).any(0), out=counts[k, 1:])
        his = np.minimum([s.hi for s in srcs], n)
        los = np.minimum([s.lo for s in srcs], n)
        routes = (counts[:, his] - counts[:, los]).T  # [src, dst]
        src = np.array([c.index for c in srcs], np.int64)
        dst = np.array([c.index for c in dsts], np.int64)
        routes[src[:, None] == dst[None, :]] = 0
        blocks.append(Block(src=src, dst=dst, routes=np.ascontiguousarray(routes)))
    return blocks


def _pairs(blocks: list[Block], nodes: list[int]) -> Iterator[tuple[int, int, int]]:
    """(source core, destination core, routes) of every pair between the cores `nodes`, in the order of the whole
    program's traffic: projection, then source core, then destination core."""
    lo, hi = min(nodes, default=0), max(nodes, default=-1)
    members = np.zeros(hi - lo + 1, bool)
    members[np.asarray(nodes, np.int64) - lo] = True

    def inside(idx: np.ndarray) -> np.ndarray:
        ok = (idx >= lo) & (idx <= hi)
        ok[ok] = members[idx[ok] - lo]
        return ok

    for b in blocks:
        rows, cols = inside(b.src), inside(b.dst)
        if not rows.any() or not cols.any():
            continue
        sub = b.routes[np.ix_(rows, cols)]
        src, dst = b.src[rows], b.dst[cols]
        for i, j in zip(*np.nonzero(sub), strict=True):  # row-major: source core, then destination core
            yield int(src[i]), int(dst[j]), int(sub[i, j])


def add_routes(g: nx.Graph, blocks: list[Block], nodes: list[int]) -> None:
    """Add to `g` the routes between the cores `nodes` as edges (weight = routes between the two cores, both
    directions summed), in the order of the whole program's traffic (`_pairs`)."""
    for u, v, routes in _pairs(blocks, nodes):
        w = g.get_edge_data(u, v, {"weight": 0})["weight"]
        g.add_edge(u, v, weight=w + routes)


def chip_adjacency(blocks: list[Block], nodes: list[int]) -> dict[int, dict[int, int]]:
    """Core → {neighbour core: routes between them} for the cores `nodes`: the adjacency `add_routes` gives a
    networkx graph, key order included (a dict keeps a key's first place when its value is updated, as networkx's
    adjacency dicts do); Kernighan–Lin's moves depend on that order, its heap breaking ties by insertion."""
    adj: dict[int, dict[int, int]] = {v: {} for v in nodes}
    for u, v, routes in _pairs(blocks, nodes):
        w = adj[u].get(v, 0) + routes
        adj[u][v] = w
        adj[v][u] = w
    return adj


def traffic_graph(program: Program) -> nx.Graph:
    """Undirected core graph of the whole program; edge weight = routes between the two cores."""
    g = nx.Graph()
    g.add_nodes_from(c.index for c in program.cores)
    add_routes(g, traffic_blocks(program), [c.index for c in program.cores])
    return g


def hop_cost(g: nx.Graph, tiles: dict[int, Tile]) -> int:
    return sum(d["weight"] * (abs(tiles[a][0] - tiles[b][0]) + abs(tiles[a][1] - tiles[b][1]))
               for a, b, d in g.edges(data=True))


def _chip_hop_cost(adj: dict[int, dict[int, int]], tiles: dict[int, Tile]) -> int:
    """`hop_cost` of the chip's graph: each edge appears twice in its adjacency, so half the sum over both."""
    return sum(w * (abs(tiles[a][0] - tiles[b][0]) + abs(tiles[a][1] - tiles[b][1]))
               for a, nbrs in adj.items() for b, w in nbrs.items()) // 2


def _view_order(cores: list[int], n_nodes: int, position: dict[int, int]) -> list[int]:
    """The node order of networkx 2.8's subgraph view `G.subgraph(cores)` of a graph G of `n_nodes` nodes (here:
    every core of the program, in program order): its FilterAtlas iterates the set of `cores` when that holds
    fewer than half of G's nodes, else G's nodes in order."""
    shown = set(cores)
    return list(shown) if 2 * len(shown) < n_nodes else sorted(shown, key=position.__getitem__)


def _kernighan_lin(adj: dict[int, dict[int, int]], labels: list[int], partition: tuple[set[int], set[int]]
                   ) -> tuple[set[int], set[int]]:
    """networkx 2.8's `kernighan_lin_bisection(G.subgraph(cores), partition, weight="weight", seed=0)`, step for
    step, on plain dicts: `labels` is the view's node order (`_view_order`), the edges are read from `adj` in
    its order. Why not the networkx call: every adjacency read through a subgraph view filters node by node, and
    that filtering was most of placement's time for a 7B program (2,446 bisections for two decoder blocks).
    tests/compiler/test_place_chips.py checks the placements against the networkx call."""
    labels = list(labels)
    random.Random(0).shuffle(labels)  # networkx's py_random_state(seed=0)
    index = {v: i for i, v in enumerate(labels)}
    side = [0] * len(labels)
    for a in partition[0]:  # networkx marks the first set 1
        side[index[a]] = 1
    edges = [[(index[u], w) for u, w in adj[v].items() if u in index] for v in labels]
    for _ in range(10):  # networkx's max_iter
        costs = list(_kernighan_lin_sweep(edges, side))
        min_cost, min_i, _ = min(costs)
        if min_cost >= 0:
            break
        for _, _, (u, v) in costs[:min_i]:
            side[u] = 1
            side[v] = 0
    return ({u for u, s in zip(labels, side, strict=True) if s == 0},
            {u for u, s in zip(labels, side, strict=True) if s == 1})


def _cut_size(adj: dict[int, dict[int, int]], part_a: set[int], part_b: set[int]) -> int:
    return sum(w for u in part_a for v, w in adj[u].items() if v in part_b)


def _mincut(adj: dict[int, dict[int, int]], n_nodes: int, position: dict[int, int], cores: list[int], x0: int,
            y0: int, w: int, h: int, per_tile: int, out: dict[int, Tile]) -> None:
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
    labels = _view_order(cores, n_nodes, position)
    best: tuple[float, set[int], set[int]] | None = None
    for n_a in sizes:
        init = (set(cores[:n_a]), set(cores[n_a:]))
        part_a, part_b = init
        if 0 < n_a < n:
            kl_a, kl_b = _kernighan_lin(adj, labels, init)
            if len(kl_a) <= cap_a and len(kl_b) <= cap_b:
                part_a, part_b = kl_a, kl_b
        cut = _cut_size(adj, part_a, part_b) if part_a and part_b else 0
        if best is None or cut < best[0]:
            best = (cut, set(part_a), set(part_b))
    assert best is not None
    _, part_a, part_b = best
    order = {c: i for i, c in enumerate(cores)}
    _mincut(adj, n_nodes, position, sorted(part_a, key=order.get), *rects[0], per_tile, out)
    _mincut(adj, n_nodes, position, sorted(part_b, key=order.get), *rects[1], per_tile, out)


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


def block_cut_routes(blocks: list[Block], n: int) -> np.ndarray:
    """`cut_routes` of the program's traffic graph, summed block by block (the same integers: each pair adds its
    routes to the same two difference entries, whichever projection it comes from). bincount adds in float64:
    exact while the total stays below 2^53 routes (a 7B program has under 10^9)."""
    diff = np.zeros(n + 2, np.int64)
    for b in blocks:
        lo = np.minimum.outer(b.src, b.dst)
        hi = np.maximum.outer(b.src, b.dst)
        diff += np.bincount((lo + 1).ravel(), b.routes.ravel(), minlength=n + 2).astype(np.int64)
        diff -= np.bincount((hi + 1).ravel(), b.routes.ravel(), minlength=n + 2).astype(np.int64)
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


def _chip_report(blocks: list[Block], placed: list[Core], target: Target) -> dict:
    """Chips used, routes between chips and their mean chip-link hops (X-Y across the chip mesh)."""
    size = max(c.index for c in placed) + 1
    chip_x, chip_y = np.zeros(size, np.int64), np.zeros(size, np.int64)
    for c in placed:
        chip_x[c.index], chip_y[c.index] = c.x // target.mesh_x, c.y // target.mesh_y
    between = chip_hops = 0
    for b in blocks:
        hops = (np.abs(chip_x[b.src][:, None] - chip_x[b.dst][None, :])
                + np.abs(chip_y[b.src][:, None] - chip_y[b.dst][None, :]))
        between += int(b.routes[hops > 0].sum())
        chip_hops += int((b.routes * hops).sum())
    return {"chips": len({c.chip for c in placed}), "chip_mesh": [target.chips_x, target.chips_y],
            "routes_between_chips": between, "chip_hop_weighted_routes": chip_hops,
            "mean_chip_hops": chip_hops / between if between else 0.0}


def place(program: Program, target: Target) -> Program:
    blocks = traffic_blocks(program)
    placed: list[Core] = []
    costs = {"serpentine": 0, "mincut": 0}
    chosen = []
    n = len(program.cores)
    position = {c.index: i for i, c in enumerate(program.cores)}
    per_chip = target.cores_per_chip
    bounds = [0, *chip_cuts(block_cut_routes(blocks, n), n, per_chip), n]
    if len(bounds) - 1 > target.chips:
        raise TargetLimitError(f"program needs {n} cores, more than {per_chip * target.chips} on the "
                               f"{target.chips} chips of {target.name}")
    walk_chips = serpentine(target.chips_x, target.chips_y)
    for chip, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        chip_cores = program.cores[lo:hi]
        adj = chip_adjacency(blocks, [c.index for c in chip_cores])  # only this chip's routes, as a view saw them
        walk = serpentine(target.mesh_x, target.mesh_y)
        snake = {c.index: walk[i // target.cores_per_tile] for i, c in enumerate(chip_cores)}
        cut: dict[int, Tile] = {}
        w, h = _smallest_rect(len(chip_cores), target)
        _mincut(adj, n, position, [c.index for c in chip_cores], 0, 0, w, h, target.cores_per_tile, cut)
        cost_snake, cost_cut = _chip_hop_cost(adj, snake), _chip_hop_cost(adj, cut)
        costs["serpentine"] += cost_snake
        costs["mincut"] += cost_cut
        best = ("mincut", cut) if cost_cut <= cost_snake else ("serpentine", snake)
        chosen.append(best[0])
        placed += _assign(chip_cores, best[1], target, chip, walk_chips[chip])
    placement = {"chosen_per_chip": chosen, "hop_weighted_routes": costs}
    if len(chosen) > 1:
        placement.update(_chip_report(blocks, placed, target))
    report = dict(program.report, placement=placement)
    return replace(program, cores=tuple(placed), report=report)
