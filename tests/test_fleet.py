"""Fleet generation from device classes."""

from __future__ import annotations

import numpy as np

from mpifl.fleet.deal import deal_by_data
from mpifl.fleet.devices import CATALOGUE
from mpifl.fleet.profiles import generate_fleet


def test_mixture_and_spread():
    fleet = generate_fleet(20000, CATALOGUE, spread=0.3, seed=0)
    shares = np.bincount(fleet.profiles["device_class"], minlength=4) / len(fleet)
    weights = np.array([c["weight"] for c in CATALOGUE.values()])
    assert np.allclose(shares, weights / weights.sum(), atol=0.02)
    mcu = fleet.profiles[fleet.profiles["device_class"] == 0]
    median = np.median(mcu["flops"])
    assert abs(median / CATALOGUE["mcu"]["flops"] - 1) < 0.05
    assert 0.25 < np.std(np.log(mcu["flops"])) < 0.35
    assert np.all(mcu["availability"] == np.float32(CATALOGUE["mcu"]["availability"]))


def test_compact_and_deterministic():
    a = generate_fleet(100_000, CATALOGUE, 0.3, seed=1)
    b = generate_fleet(100_000, CATALOGUE, 0.3, seed=1)
    assert np.array_equal(a.profiles, b.profiles)
    assert a.nbytes / len(a) <= 68  # 10^6 clients cost tens of MB (65 B each)
    assert a.class_names == ["mcu", "rpi", "phone", "jetson"]


def test_zero_spread_gives_class_medians():
    fleet = generate_fleet(50, {"only": {**CATALOGUE["rpi"], "weight": 1.0}}, 0.0, seed=0)
    assert np.all(fleet.profiles["memory"] == CATALOGUE["rpi"]["memory"])


def test_dealt_by_data_each_class_holds_about_its_share_of_the_data():
    """The same devices, one per client; every class's data share within 0.05 of its
    device share (as drawn: 0.32 off, one client holding 0.35 of the data); the same
    deal for the seed."""
    classes = {n: {**CATALOGUE[n], "weight": w} for n, w in (("mcu", 0.4), ("phone", 0.6))}
    fleet = generate_fleet(200, classes, 0.3, seed=3)
    n_train = np.random.default_rng(3).lognormal(4, 2, 200).astype(np.int64) + 50
    dealt = deal_by_data(fleet, n_train, seed=3)
    by = ["device_class", "flops", "memory"]
    assert np.array_equal(np.sort(dealt.profiles, order=by), np.sort(fleet.profiles, order=by))
    assert dealt.profiles.tobytes() == deal_by_data(fleet, n_train, seed=3).profiles.tobytes()
    for k in (0, 1):
        share = (fleet.profiles["device_class"] == k).mean()
        held = [
            n_train[f.profiles["device_class"] == k].sum() / n_train.sum() for f in (fleet, dealt)
        ]
        assert abs(held[0] - share) > 0.3  # as drawn
        assert abs(held[1] - share) <= 0.05
