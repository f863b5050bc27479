"""Readers of real data formats from a user-given path (no downloads)."""
