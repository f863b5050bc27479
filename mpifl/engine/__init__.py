"""The engine: round planning, local training, exact accumulation, the round loop."""
