"""Fleet emulation: device classes, client profiles, availability."""
