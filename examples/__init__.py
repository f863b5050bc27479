"""Plugin examples: a data set, a model and a method (docs/plugins.md)."""
