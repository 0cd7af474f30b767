"""Coarse-graining: METIS mapping of atoms to beads, bead positions, CG bonds."""

from eqcg.cg.mapping import CGMapping, CGSettings, cached_mapping, compute_mapping

__all__ = ["CGMapping", "CGSettings", "cached_mapping", "compute_mapping"]
