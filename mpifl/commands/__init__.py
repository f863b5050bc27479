"""The `mpifl` sub-commands other than run and validate (cli.py): each module adds its
parser and runs it, on top of the library packages (fleet, hpc, report, engine)."""
