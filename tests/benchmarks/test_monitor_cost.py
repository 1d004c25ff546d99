"""The Monitor-cost benchmark's timed epoch on a tiny configuration (the benchmark never runs here)."""

import monitor_cost


def test_an_epoch_runs_with_and_without_a_monitor():
    assert monitor_cost.epoch(monitored=False, steps=2) > 0
    assert monitor_cost.epoch(monitored=True, steps=2) > 0
