"""The catalogue of named IoT device classes: median profile and mixture weight of each."""

from __future__ import annotations

KiB, MiB, GiB = 1024, 1024**2, 1024**3

# Median profile of each built-in class; profiles spread lognormally around these.
CATALOGUE: dict[str, dict[str, float]] = {
    "mcu": {  # Cortex-M7-class microcontroller
        "weight": 0.25,
        "flops": 2.0e8,
        "memory": 256 * KiB,
        "uplink": 0.25e6,
        "downlink": 1.0e6,
        "latency": 0.2,
        "availability": 0.6,
    },
    "rpi": {  # Raspberry-Pi-class single-board computer
        "weight": 0.35,
        "flops": 5.0e9,
        "memory": 512 * MiB,
        "uplink": 10e6,
        "downlink": 50e6,
        "latency": 0.05,
        "availability": 0.8,
    },
    "phone": {
        "weight": 0.3,
        "flops": 2.0e10,
        "memory": 1 * GiB,
        "uplink": 5e6,
        "downlink": 20e6,
        "latency": 0.08,
        "availability": 0.5,
        "bf16": 2.0,  # bf16 dot products (Armv8.6 BF16 / NPU)
    },
    "jetson": {  # Jetson-class edge accelerator
        "weight": 0.1,
        "flops": 2.0e11,
        "memory": 4 * GiB,
        "uplink": 50e6,
        "downlink": 100e6,
        "latency": 0.02,
        "availability": 0.9,
        "bf16": 2.0,  # tensor cores
    },
}

PROFILE_KEYS: tuple[str, ...] = ("flops", "memory", "uplink", "downlink", "latency", "availability")
