"""`mpifl report`: summary tables and figures from result files."""
