"""CG edges: radius graph under periodic boundaries (vesin) plus CG bonds, typed.

Runs on the device of its inputs (vesin's torch interface computes on CPU and CUDA), for a
batch of independent systems. Displacements are recomputed here from positions and integer cell
shifts, so autograd and float64 flow through them. Edges come sorted by (source, target), so a
list filtered from a larger one (:class:`VerletList`) is the same list in the same order.
"""

from __future__ import annotations

import math

import torch
import vesin.torch
from torch.profiler import record_function

from eqcg.errors import ConfigError
from eqcg.runtime.profiling import EDGES, NEIGHBOR_LIST

RADIUS_EDGE = 0
BOND_EDGE = 1
N_EDGE_TYPES = 2


def minimum_image(
    vectors: torch.Tensor, cells: torch.Tensor, periodic: torch.Tensor, graph: torch.Tensor
) -> torch.Tensor:
    """Minimum-image convention for displacement vectors of a batch of systems.

    Args:
        vectors: ``(E, 3)`` displacements (Å).
        cells: ``(n_graphs, 3, 3)`` cell vectors as rows.
        periodic: ``(n_graphs,)`` bool; displacements in open systems are returned unchanged.
        graph: ``(E,)`` system of each displacement.

    Returns ``(E, 3)`` displacements reduced to the nearest periodic image (exact for cells whose
    reduced shape is not too skewed, which LAMMPS' tilt limits guarantee). Each system's cell is
    inverted once, not once per displacement, without the host sync of ``torch.linalg.inv``'s
    singularity check (a cell is never singular: open systems use the identity).
    """
    return vectors + _lattice_shift(vectors, cells, periodic, graph)


def radius_edges(
    pos: torch.Tensor, box: torch.Tensor, pbc: torch.Tensor, ptr: torch.Tensor, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered bead pairs closer than ``cutoff`` within each system.

    Args:
        pos: ``(n_beads, 3)`` positions (unwrapped is fine).
        box: ``(n_graphs, 3, 3)`` cell vectors as rows.
        pbc: ``(n_graphs,)`` bool, periodic in all directions.
        ptr: ``(n_graphs + 1,)`` start of each system's beads in ``pos``.
        cutoff: radius (Å).

    Returns ``edge_index (2, E)`` (source, target) and ``shift (E, 3)`` such that the displacement
    from source to target is ``pos[target] - pos[source] + shift``.
    """
    return _search(pos, box, BatchLayout.of(pbc, ptr), cutoff)


class BatchLayout:
    """Where each system's beads lie in a batch and whether it is periodic, on the host.

    Read once per batch (one host sync) so that neighbour searches of the same batch need none
    to find their systems.
    """

    def __init__(self, bounds: list[int], periodic: list[bool]):
        self.bounds, self.periodic = bounds, periodic

    @classmethod
    def of(cls, pbc: torch.Tensor, ptr: torch.Tensor) -> BatchLayout:
        """The layout of a batch with ``pbc (n_graphs,)`` and ``ptr (n_graphs + 1,)``."""
        return cls(ptr.tolist(), pbc.tolist())


def _search(
    pos: torch.Tensor, box: torch.Tensor, layout: BatchLayout, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`radius_edges` with the batch layout known: one vesin search per system, each on
    the device of ``pos``."""
    calculator = vesin.torch.NeighborList(cutoff=cutoff, full_list=True)
    senders, receivers, shifts = [], [], []
    detached = pos.detach()
    bounds, periodic = layout.bounds, layout.periodic
    for g in range(len(bounds) - 1):
        start, stop = bounds[g], bounds[g + 1]
        cell = box[g].detach() if periodic[g] else torch.zeros_like(box[g])
        i, j, s = calculator.compute(detached[start:stop], cell, periodic[g], "ijS")
        senders.append(i + start)
        receivers.append(j + start)
        shifts.append(s.to(pos.dtype) @ box[g])
    edge_index = torch.stack([torch.cat(senders), torch.cat(receivers)]).to(torch.long)
    order = torch.argsort(edge_index[0] * pos.shape[0] + edge_index[1])
    return _within(pos, edge_index[:, order], torch.cat(shifts)[order], cutoff)


def _within(
    pos: torch.Tensor, edge_index: torch.Tensor, shift: torch.Tensor, cutoff: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs of ``edge_index`` closer than ``cutoff``."""
    keep = _inside(pos, edge_index, shift, cutoff)
    return edge_index[:, keep], shift[keep]


def _inside(
    pos: torch.Tensor, edge_index: torch.Tensor, shift: torch.Tensor, cutoff: float
) -> torch.Tensor:
    """``(E,)`` whether each pair is closer than ``cutoff``, by this module's own arithmetic (so
    a fresh list and one filtered from a longer list agree at the boundary)."""
    vec = pos.detach()[edge_index[1]] - pos.detach()[edge_index[0]] + shift
    return vec.norm(dim=-1) < cutoff


def _without(
    edge_index: torch.Tensor, shift: torch.Tensor, excluded: torch.Tensor, n_beads: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs of ``edge_index`` that are not pairs of ``excluded (2, E_x)``, in order."""
    keep = ~torch.isin(edge_index[0] * n_beads + edge_index[1],
                       excluded[0] * n_beads + excluded[1])
    return edge_index[:, keep], shift[keep]


class VerletList:
    """Radius edges reused while no bead has moved more than half the skin.

    The list is built with ``cutoff + skin`` and, at every call, filtered to the pairs closer
    than ``cutoff``; it is rebuilt when a bead has moved farther than ``skin / 2`` since the
    last build (then no pair can have entered the cut-off unseen), or when the number of beads
    changes. Calls give the same edges, in the same order, as :func:`radius_edges`, less the
    pairs of ``exclude`` when given (removed once per build for the same ``exclude`` tensor:
    the CG bonds of a rollout). One list serves one batch whose boxes do not change (a
    rollout). ``builds`` counts the rebuilds.

    Host syncs: a call between rebuilds reads one pair of numbers from the device, the number
    of pairs within the cut-off (the edge list's size, which the filter needs however the
    decision is made) and whether a bead has crossed half the skin; the rebuild decision rides
    on that read and costs no sync of its own. A rebuild syncs as the neighbour search needs.
    The batch layout is read from the host once, at the first build.
    """

    def __init__(self, cutoff: float, skin: float):
        if skin <= 0:
            raise ValueError(f"Verlet skin must be > 0, got {skin}")
        self.cutoff, self.skin = cutoff, skin
        self.builds = 0
        self._reference: torch.Tensor | None = None
        self._layout: BatchLayout | None = None
        self._index = self._shift = None
        self._excluded: torch.Tensor | None = None
        self._kept: tuple[torch.Tensor, torch.Tensor] | None = None

    def __call__(
        self, pos: torch.Tensor, box: torch.Tensor, pbc: torch.Tensor, ptr: torch.Tensor,
        exclude: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``edge_index (2, E)`` and ``shift (E, 3)`` as :func:`radius_edges` returns them,
        without the pairs of ``exclude (2, E_x)``."""
        if self._reference is None or self._reference.shape != pos.shape:
            self._build(pos, box, pbc, ptr)
            return _within(pos, *self._candidates(pos, exclude), self.cutoff)
        index, shift = self._candidates(pos, exclude)
        keep = _inside(pos, index, shift, self.cutoff)
        moved = (pos.detach() - self._reference).norm(dim=-1).max()
        n_kept, stale = torch.stack([keep.sum(), (moved > 0.5 * self.skin).long()]).tolist()
        if stale:
            self._build(pos, box, pbc, ptr)
            return _within(pos, *self._candidates(pos, exclude), self.cutoff)
        kept = torch.nonzero_static(keep, size=n_kept).squeeze(1)  # no second sync
        return index[:, kept], shift[kept]

    def radius_pairs(
        self, pos: torch.Tensor, box: torch.Tensor, pbc: torch.Tensor, ptr: torch.Tensor,
        exclude: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, None]:
        """:meth:`__call__`'s pairs, every one of them real (no mask)."""
        return (*self(pos, box, pbc, ptr, exclude), None)

    def _build(self, pos: torch.Tensor, box: torch.Tensor, pbc: torch.Tensor,
               ptr: torch.Tensor) -> None:
        """Search the pairs within ``cutoff + skin`` of ``pos``."""
        if self._layout is None or len(self._layout.bounds) != ptr.shape[0]:
            self._layout = BatchLayout.of(pbc, ptr)
        self._index, self._shift = _search(pos, box, self._layout, self.cutoff + self.skin)
        self._reference = pos.detach().clone()
        self._excluded = None
        self.builds += 1

    def _candidates(
        self, pos: torch.Tensor, exclude: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The listed pairs, less those of ``exclude`` (filtered once per build and tensor)."""
        if exclude is None:
            return self._index, self._shift
        if self._excluded is not exclude:
            self._kept = _without(self._index, self._shift, exclude, pos.shape[0])
            self._excluded = exclude
        return self._kept


class DeviceNeighbors:
    """Radius pairs searched on the device at every call into a fixed number of slots: no host
    sync per call (for GPU rollouts of many small systems).

    The first call lists every ordered pair of beads within each system of the batch (less the
    pairs of ``exclude``: the CG bonds) and counts those within the cut-off; that count times
    ``capacity_factor`` fixes the slots (at most one per listed pair: then none can overflow).
    Every call then takes the minimum-image distance of every listed pair
    (:func:`minimum_image`: the cut-off must be below half of each periodic cell's narrowest
    width, checked at the first call) and fills the slots with the pairs within the cut-off, in
    the order of a fresh search (:func:`radius_edges`), followed by masked padding.
    ``overflow`` (a device flag, never read here) records a call that found more pairs than
    slots; the rollout reads it with its other guards. Work and memory grow with the square of
    the systems' sizes, so systems above ``max_pairs`` pairs in all are refused.
    """

    def __init__(self, cutoff: float, capacity_factor: float = 2.0,
                 max_pairs: int = 20_000_000):
        if capacity_factor < 1:
            raise ValueError(f"capacity_factor must be >= 1, got {capacity_factor}")
        self.cutoff, self.capacity_factor, self.max_pairs = cutoff, capacity_factor, max_pairs
        self.capacity = 0
        self.overflow: torch.Tensor | None = None
        self._pairs: torch.Tensor | None = None
        self._graph: torch.Tensor | None = None
        self._excluded: torch.Tensor | None = None

    def radius_pairs(
        self, pos: torch.Tensor, box: torch.Tensor, pbc: torch.Tensor, ptr: torch.Tensor,
        exclude: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``edge_index (2, capacity)``, ``shift (capacity, 3)`` as :func:`radius_edges`
        returns them (less the pairs of ``exclude (2, E_x)``), and ``mask (capacity,)``: which
        slots hold a pair within the cut-off (they come first)."""
        if self._pairs is None or self._excluded is not exclude:
            self._setup(pos, box, pbc, ptr, exclude)
        shift, inside = self._within_cutoff(pos, box, pbc)
        count = inside.sum()
        slots = torch.nonzero_static(inside, size=self.capacity, fill_value=0).squeeze(1)
        mask = torch.arange(self.capacity, device=pos.device) < count
        self.overflow = self.overflow | (count > self.capacity)
        return self._pairs[:, slots], shift[slots], mask

    def _within_cutoff(self, pos: torch.Tensor, box: torch.Tensor, pbc: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """``shift (P, 3)``, the minimum-image lattice shift of every listed pair, and
        ``inside (P,)``, whether the pair lies within the cut-off."""
        source, target = self._pairs
        detached = pos.detach()
        vec = detached[target] - detached[source]
        shift = _lattice_shift(vec, box, pbc, self._graph)
        return shift, (vec + shift).norm(dim=-1) < self.cutoff

    def _setup(self, pos: torch.Tensor, box: torch.Tensor, pbc: torch.Tensor,
               ptr: torch.Tensor, exclude: torch.Tensor | None) -> None:
        """List the batch's pairs and size the slots (host reads: once per rollout)."""
        layout = BatchLayout.of(pbc, ptr)
        sizes = [stop - start for start, stop in zip(layout.bounds[:-1], layout.bounds[1:])]
        total = sum(n * (n - 1) for n in sizes)
        if total > self.max_pairs:
            raise ConfigError(
                f"device neighbour search: the batch's systems hold {total:,} bead pairs (over "
                f"{self.max_pairs:,}); roll out fewer or smaller systems per batch, or use the "
                "Verlet search (rollout.neighbor_search: verlet)")
        for g, periodic in enumerate(layout.periodic):
            width = float(_cell_widths(box[g]).min()) if periodic else math.inf
            if self.cutoff >= 0.5 * width:
                raise ConfigError(
                    f"device neighbour search: cut-off {self.cutoff:g} is not below half the "
                    f"narrowest width ({width:g}) of system {g}'s cell, so minimum images may "
                    "miss pairs; use the Verlet search (rollout.neighbor_search: verlet)")
        pairs = []
        for start, n in zip(layout.bounds[:-1], sizes):
            local = torch.arange(n, device=pos.device)
            i, j = torch.meshgrid(local, local, indexing="ij")
            off_diagonal = i != j
            pairs.append(torch.stack([i[off_diagonal], j[off_diagonal]]) + start)
        pairs = torch.cat(pairs, dim=1) if pairs else torch.zeros(2, 0, dtype=torch.long,
                                                                   device=pos.device)
        if exclude is not None:
            n_beads = pos.shape[0]
            pairs = pairs[:, ~torch.isin(pairs[0] * n_beads + pairs[1],
                                         exclude[0] * n_beads + exclude[1])]
        self._pairs, self._excluded = pairs, exclude
        batch = torch.repeat_interleave(torch.arange(len(sizes), device=pos.device),
                                        torch.tensor(sizes, device=pos.device))
        self._graph = batch[pairs[0]]
        count = int(self._within_cutoff(pos, box, pbc)[1].sum())
        self.capacity = max(1, min(pairs.shape[1], math.ceil(self.capacity_factor * count)))
        self.overflow = torch.zeros((), dtype=torch.bool, device=pos.device)


def _lattice_shift(vectors: torch.Tensor, cells: torch.Tensor, periodic: torch.Tensor,
                   graph: torch.Tensor) -> torch.Tensor:
    """``(E, 3)`` the lattice vector that takes each displacement to its minimum image
    (:func:`minimum_image` less the displacement: exact multiples of the cell)."""
    eye = torch.eye(3, dtype=cells.dtype, device=cells.device)
    safe_cells = torch.where(periodic[:, None, None], cells, eye)
    inverse = torch.linalg.inv_ex(safe_cells).inverse
    frac = torch.einsum("ei,eij->ej", vectors, inverse[graph])
    images = torch.where(periodic[graph][:, None], -torch.round(frac), torch.zeros_like(frac))
    return torch.einsum("ei,eij->ej", images, safe_cells[graph])


def _cell_widths(cell: torch.Tensor) -> torch.Tensor:
    """``(3,)`` distances between opposite faces of the cell with rows ``cell (3, 3)``."""
    volume = torch.linalg.det(cell).abs()
    areas = torch.stack([torch.linalg.cross(cell[1], cell[2]), torch.linalg.cross(cell[2], cell[0]),
                         torch.linalg.cross(cell[0], cell[1])]).norm(dim=-1)
    return volume / areas


def cg_edges(
    pos: torch.Tensor,
    box: torch.Tensor,
    pbc: torch.Tensor,
    batch: torch.Tensor,
    ptr: torch.Tensor,
    bond_index: torch.Tensor,
    cutoff: float,
    neighbors: VerletList | DeviceNeighbors | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Radius edges plus CG-bond edges, one edge per ordered pair, typed.

    A pair that is a CG bond is a ``BOND_EDGE`` whatever its distance (minimum image); other
    pairs within ``cutoff`` are ``RADIUS_EDGE``.

    Args:
        pos: ``(n_beads, 3)``; box ``(n_graphs, 3, 3)``; pbc ``(n_graphs,)``;
        batch: ``(n_beads,)`` system of each bead; ptr ``(n_graphs + 1,)``.
        bond_index: ``(2, n_bond_edges)`` CG bonds, both directions.
        cutoff: radius (Å).
        neighbors: a :class:`VerletList` or :class:`DeviceNeighbors` of this cut-off to reuse
            (default: a fresh search).

    Returns ``edge_index (2, E)``, ``edge_vec (E, 3)`` displacement source -> target,
    ``edge_type (E,)`` and ``edge_mask (E,)``: which edges are real (``None``: all are; a
    :class:`DeviceNeighbors` pads its fixed slots with masked ones).
    """
    with record_function(EDGES):
        with record_function(NEIGHBOR_LIST):
            if neighbors is None:
                r_index, r_shift = _without(*radius_edges(pos, box, pbc, ptr, cutoff),
                                            bond_index, pos.shape[0])
                r_mask = None
            else:
                r_index, r_shift, r_mask = neighbors.radius_pairs(pos, box, pbc, ptr,
                                                                  exclude=bond_index)
        edge_index, edge_vec, edge_type = _typed_edges(pos, box, pbc, batch, bond_index,
                                                       r_index, r_shift)
        if r_mask is not None:
            r_mask = torch.cat([r_mask, torch.ones(bond_index.shape[1], dtype=torch.bool,
                                                   device=pos.device)])
        return edge_index, edge_vec, edge_type, r_mask


def _typed_edges(
    pos: torch.Tensor, box: torch.Tensor, pbc: torch.Tensor, batch: torch.Tensor,
    bond_index: torch.Tensor, r_index: torch.Tensor, r_shift: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`cg_edges` from the non-bonded radius pairs ``r_index (2, E_r)`` and their
    shifts ``(E_r, 3)``; bond displacements by the minimum image."""
    r_vec = pos[r_index[1]] - pos[r_index[0]] + r_shift
    b_vec = minimum_image(pos[bond_index[1]] - pos[bond_index[0]], box, pbc,
                          batch[bond_index[0]])
    edge_index = torch.cat([r_index, bond_index], dim=1)
    edge_vec = torch.cat([r_vec, b_vec])
    edge_type = torch.cat([
        torch.full((r_index.shape[1],), RADIUS_EDGE, dtype=torch.long, device=pos.device),
        torch.full((bond_index.shape[1],), BOND_EDGE, dtype=torch.long, device=pos.device),
    ])
    return edge_index, edge_vec, edge_type
