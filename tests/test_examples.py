"""The example scripts run (the cheap ones here; the training ones are exercised by the demo)."""

import subprocess
import sys


def test_check_equivariance_example_reports_tiny_errors_for_the_equivariant_config(tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text("extends: " + str(__import__("pathlib").Path("configs").resolve()
                                        / "polymer_equivariant.yaml") +
                      "\nmodel: {latent_dim: 16, equivariant: {vector_channels: 4},"
                      " message_passing_steps: 1,"
                      " score_message_passing_steps: 1}\nscore: {n_levels: 3}\n")
    done = subprocess.run([sys.executable, "examples/check_equivariance.py", str(config)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("equivariant")]
    assert len(lines) == 2
    for line in lines:
        errors = [float(part.split()[-1]) for part in line.split(": ", 1)[1].split(", ")]
        assert max(errors) < 1e-9, line
