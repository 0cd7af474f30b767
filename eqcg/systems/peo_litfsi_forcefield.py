"""All-atom force field and ideal molecule geometries for PEO + LiTFSI (LAMMPS ``units real``).

Functional forms (LAMMPS styles ``lj/cut/coul/long``, ``bond harmonic``, ``angle harmonic``,
``dihedral opls``), with OPLS combination and scaling rules: geometric mixing of sigma and
epsilon (``pair_modify mix geometric``) and 1-4 interactions scaled by 0.5
(``special_bonds lj/coul 0.0 0.0 0.5``)::

    E_pair     = 4 eps [(sigma/r)^12 - (sigma/r)^6] + q_i q_j / r
    E_bond     = K (r - r0)^2                                   K in kcal/mol/Å^2
    E_angle    = K (theta - theta0)^2                           K in kcal/mol/rad^2
    E_dihedral = V1/2 (1 + cos phi) + V2/2 (1 - cos 2phi) + V3/2 (1 + cos 3phi)
                 + V4/2 (1 - cos 4phi)                          V in kcal/mol

Sources (every value below was checked against the file named):

* **PEO** — OPLS-AA ethers and alkanes: W. L. Jorgensen, D. S. Maxwell, J. Tirado-Rives,
  J. Am. Chem. Soc. 118, 11225 (1996), ether parameters from Briggs, Nguyen, Jorgensen,
  J. Phys. Chem. 95, 3315 (1991). Values as in the BOSS 4.8 / TINKER ``oplsaa.prm`` table
  (OPLS atom types 180 "O: dialkyl ether", 181 "C(H3OR): methyl ether", 182 "C(H2OR): ethyl
  ether", 185 "H(COR): alpha H ether"; classes CT, HC, OS). Already in kcal/mol, with
  ``K`` in the ``K (x - x0)^2`` convention that LAMMPS uses.
* **TFSI** — CL&P: J. N. Canongia Lopes, A. A. H. Pádua, J. Phys. Chem. B 108, 16893 (2004),
  as tabulated in the CL&P ``il.ff`` file (types FBT/CBT/SBT/OBT/NBT, there F1/CBT/SBT/OBT/NBT
  with classes FB/CF/SB/OB/NB). ``il.ff`` is in kJ/mol with force constants in the
  ``k/2 (x - x0)^2`` convention; the tables below keep those published numbers and
  :data:`KJ_PER_KCAL` converts them (LAMMPS ``K = k / 2 / 4.184``).
* **Li+** — J. Åqvist, J. Phys. Chem. 94, 8021 (1990), in the OPLS-AA / CL&P form
  sigma = 2.126 Å, epsilon = 0.07648 kJ/mol (0.01828 kcal/mol).

Ion charges (Li+ and every TFSI atom) are multiplied by a charge-scaling factor (default
:data:`DEFAULT_CHARGE_SCALE` = 0.8), a common mean-field correction for the missing
electronic polarisation of ionic liquids and salt-in-polymer electrolytes; PEO charges are
not scaled. Masses are IUPAC standard atomic weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KJ_PER_KCAL = 4.184
DEFAULT_CHARGE_SCALE = 0.8

#: Element masses, g/mol (IUPAC standard atomic weights, abridged).
ELEMENT_MASSES: dict[str, float] = {
    "H": 1.008, "C": 12.011, "N": 14.007, "O": 15.999, "F": 18.998, "S": 32.06, "Li": 6.94,
}


@dataclass(frozen=True)
class AtomType:
    """A Lennard-Jones atom type: element, sigma (Å), epsilon (kcal/mol)."""

    name: str
    element: str
    sigma: float
    epsilon: float

    @property
    def mass(self) -> float:
        """Mass in g/mol."""
        return ELEMENT_MASSES[self.element]


#: Atom types in LAMMPS type order (type id = index + 1).
ATOM_TYPES: tuple[AtomType, ...] = (
    # OPLS-AA (oplsaa.prm vdw 120/121, 124, 119): kcal/mol already.
    AtomType("CT", "C", 3.50, 0.066),
    AtomType("HC", "H", 2.50, 0.030),
    AtomType("OS", "O", 2.90, 0.140),
    # Åqvist 1990 Li+ as in CL&P il.ff: 0.07648 kJ/mol.
    AtomType("Li", "Li", 2.126, 0.07648 / KJ_PER_KCAL),
    # CL&P il.ff, bistriflamide (JPCB 108, 16893): epsilon in kJ/mol.
    AtomType("NBT", "N", 3.25, 0.71128 / KJ_PER_KCAL),
    AtomType("SBT", "S", 3.55, 1.04600 / KJ_PER_KCAL),
    AtomType("OBT", "O", 2.96, 0.87864 / KJ_PER_KCAL),
    AtomType("CBT", "C", 3.50, 0.27614 / KJ_PER_KCAL),
    AtomType("FBT", "F", 2.95, 0.22175 / KJ_PER_KCAL),
)
TYPE_NAMES: tuple[str, ...] = tuple(t.name for t in ATOM_TYPES)
TYPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(TYPE_NAMES)}

#: Partial charges before ion scaling (e). OPLS-AA types 180/181/182/185; CL&P il.ff.
CHARGES: dict[str, float] = {
    "OS": -0.40,       # O: dialkyl ether (opls 180)
    "CT_CH3": 0.11,    # C(H3OR): methyl ether (opls 181)
    "CT_CH2": 0.14,    # C(H2OR): ethyl ether (opls 182)
    "HC": 0.03,        # H(COR): alpha H ether (opls 185)
    "Li": 1.00,
    "NBT": -0.66,
    "SBT": 1.02,
    "OBT": -0.53,
    "CBT": 0.35,
    "FBT": -0.16,
}

#: Harmonic bonds: (type, type) -> (K kcal/mol/Å^2, r0 Å). The first one (C-H) is SHAKEn.
BONDS: dict[tuple[str, str], tuple[float, float]] = {
    ("CT", "HC"): (340.0, 1.090),   # oplsaa.prm bond 13 36
    ("CT", "OS"): (320.0, 1.410),   # bond 13 29
    ("CT", "CT"): (268.0, 1.529),   # bond 13 13
    # CL&P il.ff: k (kJ/mol/Å^2, k/2 convention) -> K = k / 2 / 4.184.
    ("CBT", "FBT"): (3698.0 / 2 / KJ_PER_KCAL, 1.323),
    ("CBT", "SBT"): (1950.0 / 2 / KJ_PER_KCAL, 1.818),
    ("OBT", "SBT"): (5331.0 / 2 / KJ_PER_KCAL, 1.437),
    ("NBT", "SBT"): (3137.0 / 2 / KJ_PER_KCAL, 1.570),
}
SHAKE_BOND: tuple[str, str] = ("CT", "HC")

#: Harmonic angles: (i, j, k) with j the apex -> (K kcal/mol/rad^2, theta0 degrees).
ANGLES: dict[tuple[str, str, str], tuple[float, float]] = {
    ("HC", "CT", "HC"): (33.0, 107.8),   # oplsaa.prm angle 36 13 36
    ("CT", "CT", "HC"): (37.5, 110.7),   # angle 13 13 36
    ("HC", "CT", "OS"): (35.0, 109.5),   # angle 29 13 36
    ("CT", "CT", "OS"): (50.0, 109.5),   # angle 13 13 29
    ("CT", "OS", "CT"): (60.0, 109.5),   # angle 13 29 13
    # CL&P il.ff (kJ/mol/rad^2, k/2 convention).
    ("FBT", "CBT", "FBT"): (781.0 / 2 / KJ_PER_KCAL, 107.1),
    ("FBT", "CBT", "SBT"): (694.0 / 2 / KJ_PER_KCAL, 111.7),
    ("OBT", "SBT", "OBT"): (969.0 / 2 / KJ_PER_KCAL, 118.5),
    ("CBT", "SBT", "OBT"): (870.0 / 2 / KJ_PER_KCAL, 102.6),
    ("NBT", "SBT", "OBT"): (789.0 / 2 / KJ_PER_KCAL, 113.6),
    ("CBT", "SBT", "NBT"): (764.0 / 2 / KJ_PER_KCAL, 103.5),
    ("SBT", "NBT", "SBT"): (671.0 / 2 / KJ_PER_KCAL, 125.6),
}

#: OPLS dihedrals: (i, j, k, l) -> (V1, V2, V3, V4) kcal/mol.
DIHEDRALS: dict[tuple[str, str, str, str], tuple[float, float, float, float]] = {
    ("HC", "CT", "CT", "HC"): (0.0, 0.0, 0.300, 0.0),     # torsion 36 13 13 36
    ("HC", "CT", "CT", "OS"): (0.0, 0.0, 0.468, 0.0),     # torsion 29 13 13 36
    ("OS", "CT", "CT", "OS"): (-0.550, 0.0, 0.0, 0.0),    # torsion 29 13 13 29
    ("HC", "CT", "OS", "CT"): (0.0, 0.0, 0.760, 0.0),     # torsion 36 13 29 0 (wildcard)
    ("CT", "CT", "OS", "CT"): (0.650, -0.250, 0.670, 0.0),  # torsion 13 13 29 13
    # CL&P il.ff (kJ/mol).
    ("FBT", "CBT", "SBT", "OBT"): tuple(v / KJ_PER_KCAL for v in (0.0, 0.0, 1.4510, 0.0)),
    ("FBT", "CBT", "SBT", "NBT"): tuple(v / KJ_PER_KCAL for v in (0.0, 0.0, 1.3220, 0.0)),
    ("OBT", "SBT", "NBT", "SBT"): tuple(v / KJ_PER_KCAL for v in (0.0, 0.0, -0.0150, 0.0)),
    ("CBT", "SBT", "NBT", "SBT"): tuple(
        v / KJ_PER_KCAL for v in (32.7730, -10.4200, -3.1950, 0.0)
    ),
}

BOND_KEYS: tuple[tuple[str, str], ...] = tuple(BONDS)
ANGLE_KEYS: tuple[tuple[str, str, str], ...] = tuple(ANGLES)
DIHEDRAL_KEYS: tuple[tuple[str, str, str, str], ...] = tuple(DIHEDRALS)


@dataclass
class Molecule:
    """One molecule: atom types, partial charges (e), ideal coordinates (Å) and bonds.

    Angles and dihedrals are derived from the bonds (:func:`angles_of`, :func:`dihedrals_of`).
    """

    name: str
    types: list[str]
    charges: np.ndarray
    coords: np.ndarray
    bonds: np.ndarray

    @property
    def n_atoms(self) -> int:
        return len(self.types)

    @property
    def mass(self) -> float:
        """Molar mass, g/mol."""
        return float(sum(ATOM_TYPES[TYPE_INDEX[t]].mass for t in self.types))


def _place(a: np.ndarray, b: np.ndarray, c: np.ndarray, bond: float, angle: float,
           dihedral: float) -> np.ndarray:
    """Position of atom d with |cd| = bond (Å), angle bcd and dihedral abcd (degrees)."""
    theta, phi = np.radians(angle), np.radians(dihedral)
    bc = (c - b) / np.linalg.norm(c - b)
    normal = np.cross(b - a, bc)
    normal /= np.linalg.norm(normal)
    m = np.column_stack([bc, np.cross(normal, bc), normal])
    local = bond * np.array([-np.cos(theta), np.sin(theta) * np.cos(phi),
                             np.sin(theta) * np.sin(phi)])
    return c + m @ local


def peo_chain(n: int) -> Molecule:
    """Methyl-capped PEO ``CH3-(O-CH2-CH2)n-O-CH3`` as an all-trans zig-zag (7n + 9 atoms).

    Backbone bond lengths and angles are the force field's equilibrium values; hydrogens sit
    at the tetrahedral positions (dihedrals ±60° and 180° from the backbone).
    """
    if n < 1:
        raise ValueError(f"PEO chain needs n >= 1 repeat units, got {n}")
    backbone = ["C"] + ["O", "C", "C"] * n + ["O", "C"]
    r_co, r_cc, r_ch = BONDS[("CT", "OS")][1], BONDS[("CT", "CT")][1], BONDS[("CT", "HC")][1]
    pos = [np.zeros(3), np.array([r_co, 0.0, 0.0])]
    angle = 109.5
    # Seed the zig-zag in the xy-plane; then every backbone dihedral is trans.
    pos.append(_place(np.array([0.0, 1.0, 0.0]), pos[0], pos[1], r_co, angle, 0.0))
    for i in range(3, len(backbone)):
        length = r_cc if backbone[i] == backbone[i - 1] == "C" else r_co
        pos.append(_place(pos[i - 3], pos[i - 2], pos[i - 1], length, angle, 180.0))
    types = ["CT" if e == "C" else "OS" for e in backbone]
    charges = [CHARGES["OS"] if e == "O" else CHARGES["CT_CH2"] for e in backbone]
    charges[0] = charges[-1] = CHARGES["CT_CH3"]
    bonds = [(i, i + 1) for i in range(len(backbone) - 1)]
    last = len(backbone) - 1
    for i, element in enumerate(backbone):
        if element != "C":
            continue
        if i == 0:  # first methyl: reference atoms ahead of it
            a, b = pos[2], pos[1]
            dihedrals = (180.0, 60.0, -60.0)
        else:
            a, b = pos[i - 2], pos[i - 1]
            dihedrals = (180.0, 60.0, -60.0) if i == last else (60.0, -60.0)
        for phi in dihedrals:
            pos.append(_place(a, b, pos[i], r_ch, 109.5, phi))
            types.append("HC")
            charges.append(CHARGES["HC"])
            bonds.append((i, len(pos) - 1))
    return Molecule(f"PEO{n}", types, np.array(charges), np.array(pos), np.array(bonds))


def lithium(charge_scale: float = DEFAULT_CHARGE_SCALE) -> Molecule:
    """A Li+ ion with charge ``charge_scale`` e."""
    return Molecule("Li", ["Li"], np.array([CHARGES["Li"] * charge_scale]), np.zeros((1, 3)),
                    np.zeros((0, 2), dtype=np.int64))


def tfsi(charge_scale: float = DEFAULT_CHARGE_SCALE) -> Molecule:
    """TFSI- ``N(SO2CF3)2`` in the trans (C2) conformer, charges scaled by ``charge_scale``.

    Built from the CL&P equilibrium bond lengths and angles, with C-S-N-S dihedrals of 90°
    (the trans conformer) and staggered CF3 groups.
    """
    r = {key: value[1] for key, value in BONDS.items()}
    theta = {key: value[1] for key, value in ANGLES.items()}
    n = np.zeros(3)
    s1 = np.array([r[("NBT", "SBT")], 0.0, 0.0])
    s2 = _place(np.array([0.0, 1.0, 0.0]), s1, n, r[("NBT", "SBT")],
                theta[("SBT", "NBT", "SBT")], 0.0)
    types, pos, bonds = ["NBT", "SBT", "SBT"], [n, s1, s2], [(0, 1), (0, 2)]
    for s_idx, other in ((1, s2), (2, s1)):
        s = pos[s_idx]
        c = _place(other, n, s, r[("CBT", "SBT")], theta[("CBT", "SBT", "NBT")], 90.0)
        types.append("CBT")
        pos.append(c)
        c_idx = len(pos) - 1
        bonds.append((s_idx, c_idx))
        for phi in (90.0 + 120.0, 90.0 - 120.0):
            pos.append(_place(other, n, s, r[("OBT", "SBT")], theta[("NBT", "SBT", "OBT")], phi))
            types.append("OBT")
            bonds.append((s_idx, len(pos) - 1))
        for phi in (180.0, 60.0, -60.0):
            pos.append(_place(n, s, c, r[("CBT", "FBT")], theta[("FBT", "CBT", "SBT")], phi))
            types.append("FBT")
            bonds.append((c_idx, len(pos) - 1))
    charges = np.array([CHARGES[t] for t in types]) * charge_scale
    return Molecule("TFSI", types, charges, np.array(pos), np.array(bonds))


def _neighbours(n_atoms: int, bonds: np.ndarray) -> list[list[int]]:
    adjacency: list[list[int]] = [[] for _ in range(n_atoms)]
    for i, j in bonds:
        adjacency[i].append(int(j))
        adjacency[j].append(int(i))
    return adjacency


def angles_of(n_atoms: int, bonds: np.ndarray) -> np.ndarray:
    """``(n_angles, 3)`` atom triples i-j-k (j the apex) implied by the bonds."""
    adjacency = _neighbours(n_atoms, bonds)
    triples = [(i, j, k) for j in range(n_atoms) for a, i in enumerate(adjacency[j])
               for k in adjacency[j][a + 1:]]
    return np.array(triples, dtype=np.int64).reshape(-1, 3)


def dihedrals_of(n_atoms: int, bonds: np.ndarray) -> np.ndarray:
    """``(n_dihedrals, 4)`` proper dihedrals i-j-k-l implied by the bonds."""
    adjacency = _neighbours(n_atoms, bonds)
    quads = [(i, j, k, m) for j, k in bonds for i in adjacency[j] if i != k
             for m in adjacency[k] if m not in (j, i)]
    return np.array(quads, dtype=np.int64).reshape(-1, 4)


def _lookup(keys: tuple[tuple[str, ...], ...], names: tuple[str, ...], what: str) -> int:
    """0-based index of the parameter entry matching ``names`` read either way."""
    for candidate in (names, names[::-1]):
        if candidate in keys:
            return keys.index(candidate)
    raise KeyError(f"no {what} parameters for {'-'.join(names)}")


def bond_type(names: tuple[str, str]) -> int:
    """0-based index into :data:`BOND_KEYS` of the bond between two atom types."""
    return _lookup(BOND_KEYS, names, "bond")


def angle_type(names: tuple[str, str, str]) -> int:
    """0-based index into :data:`ANGLE_KEYS` of an angle i-j-k."""
    return _lookup(ANGLE_KEYS, names, "angle")


def dihedral_type(names: tuple[str, str, str, str]) -> int:
    """0-based index into :data:`DIHEDRAL_KEYS` of a dihedral i-j-k-l."""
    return _lookup(DIHEDRAL_KEYS, names, "dihedral")


def lammps_coefficients() -> str:
    """LAMMPS commands setting every pair/bond/angle/dihedral coefficient (types 1-based)."""
    lines = ["# PEO/LiTFSI: OPLS-AA ethers, CL&P TFSI, Åqvist Li+ (see eqcg.systems."
             "peo_litfsi_forcefield)"]
    for i, t in enumerate(ATOM_TYPES, start=1):
        lines.append(f"pair_coeff {i} {i} {t.epsilon:.6f} {t.sigma:.4f}  # {t.name}")
    for i, (key, (k, r0)) in enumerate(BONDS.items(), start=1):
        lines.append(f"bond_coeff {i} {k:.4f} {r0:.4f}  # {'-'.join(key)}")
    for i, (key, (k, theta0)) in enumerate(ANGLES.items(), start=1):
        lines.append(f"angle_coeff {i} {k:.4f} {theta0:.3f}  # {'-'.join(key)}")
    for i, (key, v) in enumerate(DIHEDRALS.items(), start=1):
        values = " ".join(f"{x:.6f}" for x in v)
        lines.append(f"dihedral_coeff {i} {values}  # {'-'.join(key)}")
    return "\n".join(lines) + "\n"
