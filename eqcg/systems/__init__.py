"""Reference MD generators run by the real LAMMPS engine: polymer chains and PEO/LiTFSI, each
registered by name in :mod:`eqcg.systems.registry`."""
