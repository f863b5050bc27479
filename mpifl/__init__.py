"""mpifl: federated learning on emulated heterogeneous IoT fleets over MPI."""

__version__ = "0.2.0"
