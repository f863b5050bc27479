"""Starting points that `mpifl new` writes: a job file (from the config schema) and a
method plugin (method.py, a working FedAvg written with the kit)."""
