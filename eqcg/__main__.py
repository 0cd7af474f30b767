"""``python -m eqcg`` runs the command line (also what ``torchrun -m eqcg`` launches)."""

import sys

from eqcg.commands.cli import main

sys.exit(main())
