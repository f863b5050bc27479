"""HDF5 results: schema, writer (rank 0), reader."""
