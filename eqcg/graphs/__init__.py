"""CG graphs: mapped systems and their tensors, training windows, periodic neighbour lists."""

from eqcg.graphs.system import CGSystem, TypeVocabulary, prepare_systems
from eqcg.graphs.windows import WindowDataset

__all__ = ["CGSystem", "TypeVocabulary", "WindowDataset", "prepare_systems"]
