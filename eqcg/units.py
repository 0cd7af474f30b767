"""Unit systems a dataset can be stored in.

Each dataset uses one unit system for all its systems, recorded in its metadata:

* ``real`` — atomistic data: lengths in Å, time in ps, masses in g/mol.
* ``lj`` — bead-spring models in reduced units: lengths in sigma, time in tau, masses in m.
"""

from __future__ import annotations

from dataclasses import dataclass

from eqcg.errors import DataError


@dataclass(frozen=True)
class UnitSystem:
    """Names of the units a dataset's numbers are in."""

    name: str
    length: str
    time: str
    mass: str


UNIT_SYSTEMS: dict[str, UnitSystem] = {
    "real": UnitSystem("real", length="Å", time="ps", mass="g/mol"),
    "lj": UnitSystem("lj", length="sigma", time="tau", mass="m"),
}


def unit_system(name: str, where: str = "") -> UnitSystem:
    """Look up a unit system by name; raise :class:`DataError` naming ``where`` if unknown."""
    try:
        return UNIT_SYSTEMS[name]
    except KeyError:
        known = ", ".join(sorted(UNIT_SYSTEMS))
        place = f" in {where}" if where else ""
        raise DataError(f"unknown unit system {name!r}{place}; known: {known}") from None
