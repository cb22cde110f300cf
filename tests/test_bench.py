"""Smoke test of ``sandbox bench --quick --json``: every figure present and positive (no timing thresholds)."""

from __future__ import annotations

import json
import subprocess
import sys

KEYS = (
    "channel_msgs_per_s", "bare_book_orders_per_s", "orders_per_s_live", "msgs_per_s_live",
    "msgs_per_s_deterministic", "tick_s_1k", "tick_s_100k", "cascade_accounts", "cascade_liquidations",
    "cascade_s", "cascade_msgs_per_s", "cascade_peak_rss_mb", "explore_examples_per_s",
    "delivery_msgs_per_s_10", "delivery_msgs_per_s_100000", "delivery_flat_ratio", "delivery_flat_ratio_100_links",
    "cascade_100k_s", "cascade_100k_msgs_per_s", "cascade_100k_peak_rss_mb", "cascade_cost_ratio",
    "cascade_cost_ratio_cpu", "cascade_cpu_s", "cascade_base_s",
)


def test_bench_quick_json_has_every_figure():
    out = subprocess.run([sys.executable, "-m", "sandbox", "bench", "--quick", "--json"],
                         capture_output=True, text=True, check=True, timeout=600)
    figures = json.loads(out.stdout)
    for key in KEYS:
        assert key in figures, key
        assert isinstance(figures[key], (int, float)) and figures[key] > 0, (key, figures[key])
    assert figures["cascade_invariants_ok"] == 1
    for name in ("cascade_cost_ratio <= 1.5", "cascade_100k_msgs_per_s >= 0.3 x channel_msgs_per_s"):
        assert name in figures["targets"], name
