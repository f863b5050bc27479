"""HPC operation: SLURM batch scripts, submission and sweeps (job arrays)."""
