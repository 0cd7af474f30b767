"""``python -m eqcg`` runs the command line (also what ``torchrun -m eqcg`` launches)."""

import sys

from eqcg.cli import main

sys.exit(main())
