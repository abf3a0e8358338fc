"""place: put cores on the 2-D mesh so that consecutive layers sit on neighbouring tiles.

Cores are laid in topological order along a boustrophedon (serpentine) walk over the tiles, `cores_per_tile`
cores per tile, filling chip after chip (chips abut along x). In a layer chain all traffic runs from one layer to
the next, so this keeps every message within a few hops of its source (the standard snake mapping of
pipelined layers). Traffic-driven placement for branching graphs is issue 5's.
"""

from __future__ import annotations

from dataclasses import replace

from ..ir import Program
from ..targets import Target


def serpentine(mesh_x: int, mesh_y: int) -> list[tuple[int, int]]:
    """Tile coordinates row by row, alternating direction, so each tile neighbours the next."""
    walk = []
    for y in range(mesh_y):
        xs = range(mesh_x) if y % 2 == 0 else range(mesh_x - 1, -1, -1)
        walk.extend((x, y) for x in xs)
    return walk


def place(program: Program, target: Target) -> Program:
    walk = serpentine(target.mesh_x, target.mesh_y)
    placed = []
    for core in program.cores:
        chip, within = divmod(core.index, target.chip_cores)
        tile, slot = divmod(within, target.cores_per_tile)
        x, y = walk[tile % len(walk)]
        placed.append(replace(core, chip=chip, x=x + chip * target.mesh_x, y=y, slot=slot))
    return replace(program, cores=tuple(placed))
