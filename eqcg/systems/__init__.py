"""Reference MD generators run by the real LAMMPS engine: polymer chains and PEO/LiTFSI."""
