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
        "train_power": 0.25,  # W (docs/fleet.md, Energy and batteries: sources)
        "idle_power": 1e-5,
        "tx_power": 0.024,  # BLE
        "rx_power": 0.0235,
        "battery": 13_300.0,  # J: a 1000 mAh 3.7 V LiPo
        "charge_min": 0.5,
        "charge_max": 1.0,
        "solar": 0.0,  # W peak: no panel (a job gives one, e.g. jobs/solar_sensors.toml)
    },
    "rpi": {  # Raspberry-Pi-class single-board computer
        "weight": 0.35,
        "flops": 5.0e9,
        "memory": 512 * MiB,
        "uplink": 10e6,
        "downlink": 50e6,
        "latency": 0.05,
        "availability": 0.8,
        "train_power": 5.5,
        "idle_power": 2.0,
        "tx_power": 0.7,  # Wi-Fi
        "rx_power": 0.5,
        "battery": 0.0,  # mains
        "charge_min": 1.0,
        "charge_max": 1.0,
        "solar": 0.0,  # W peak: no panel (a job gives one, e.g. jobs/solar_sensors.toml)
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
        "train_power": 3.0,
        "idle_power": 0.1,
        "tx_power": 1.5,  # Wi-Fi
        "rx_power": 1.0,
        "battery": 62_400.0,  # J: 4500 mAh at 3.85 V
        "charge_min": 0.2,
        "charge_max": 1.0,
        "solar": 0.0,  # W peak: no panel (a job gives one, e.g. jobs/solar_sensors.toml)
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
        "train_power": 10.0,
        "idle_power": 2.5,
        "tx_power": 0.5,
        "rx_power": 0.5,
        "battery": 0.0,  # mains
        "charge_min": 1.0,
        "charge_max": 1.0,
        "solar": 0.0,  # W peak: no panel (a job gives one, e.g. jobs/solar_sensors.toml)
    },
}

PROFILE_KEYS: tuple[str, ...] = ("flops", "memory", "uplink", "downlink", "latency", "availability")
# Energy: W while training, idle, sending, receiving; battery J (0: mains); solar peak W.
POWER_KEYS: tuple[str, ...] = ("train_power", "idle_power", "tx_power", "rx_power")
ENERGY_KEYS: tuple[str, ...] = (*POWER_KEYS, "battery", "solar")
# A device class that gives no energy values (a job's own class, a FedScale import): a phone's.
ENERGY_DEFAULTS: dict[str, float] = {
    "solar": 0.0,
    **{k: CATALOGUE["phone"][k] for k in (*POWER_KEYS, "battery", "charge_min", "charge_max")},
}
