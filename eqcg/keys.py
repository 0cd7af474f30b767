"""Names of the fields of a CG graph batch, with their shapes.

``n_atoms``/``n_beads`` count over all systems of a batch; ``k`` is the history length.
Fine-level (atom) fields feed the embedding GNN; bead fields feed the dynamics and score GNNs.
"""

from typing import Final

# --- per atom (fine level) ---------------------------------------------------------------------
ATOM_TYPES: Final = "atom_types"  # (n_atoms,) long, index into the model's atom-type vocabulary
ATOM_MASSES: Final = "atom_masses"  # (n_atoms,) float, g/mol or m
ATOM_TO_BEAD: Final = "atom_to_bead"  # (n_atoms,) long, bead of each atom

# --- per fine bond edge (both directions) ------------------------------------------------------
FINE_EDGE_INDEX: Final = "fine_edge_index"  # (2, n_fine_edges) long, atom indices
FINE_EDGE_TYPES: Final = "fine_edge_types"  # (n_fine_edges,) long, bond-type vocabulary index

# --- per bead ----------------------------------------------------------------------------------
POS_HISTORY: Final = "pos_history"  # (n_beads, k, 3) float, unwrapped, oldest frame first
TARGET_POS: Final = "target_pos"  # (n_beads, 3) float, position one learned step later
BEAD_MASSES: Final = "bead_masses"  # (n_beads,) float
BEAD_SPECIES: Final = "bead_species"  # (n_beads,) long, molecule kind within its system
BEAD_MOLECULE: Final = "bead_molecule"  # (n_beads,) long, molecule of each bead (unique in a batch)

# --- per CG bond edge (both directions) --------------------------------------------------------
CG_BOND_INDEX: Final = "cg_bond_index"  # (2, n_cg_bond_edges) long, bead indices

# --- per graph (system) ------------------------------------------------------------------------
BOX: Final = "box"  # (n_graphs, 3, 3) float, cell vectors as rows (zeros if not periodic)
PBC: Final = "pbc"  # (n_graphs,) bool
TARGET_RG: Final = "target_rg"  # (n_graphs,) float, radius of gyration at the target frame
# (n_graphs,) float, thermostat temperature (K or epsilon/k_B; nan: unknown)
TEMPERATURE: Final = "temperature"

# the fields indexed by bead (reordered together by permutation checks)
BEAD_FIELDS: Final = (POS_HISTORY, TARGET_POS, BEAD_MASSES, BEAD_SPECIES, BEAD_MOLECULE)
