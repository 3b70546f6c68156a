"""The threshold chooser's sequence of tests, with and without the fallback points, on synthetic draws.

Scores are uniform on [0, 1] and a ticket scoring s is wrong with probability scale * (1 - s)^2, so the true
error among tickets scoring >= t is scale * (1 - t)^2 / 3 (the model of tests/triage/test_risk.py); scale is
10 times the target, so the loosest threshold that honours it, 0.4523, covers 54.8% of tickets. Some draws
also make wrong a few of the 40 most confident tickets, as a mislabelled ticket or a confident out-of-scope
request does in real calibration data. For each setting the chooser (`triage.risk.thresholds_choose`) runs
with the product's fallback share (`FALLBACK_SHARE`) and with none (plain fixed-sequence testing), and the
bench prints the mean coverage (share of tickets auto-handled), the draws where nothing was certified, and
the draws where the chosen threshold honoured the target on such traffic; then one JSON line of them.

    uv run python bench/threshold_sequence.py [--draws 300]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from triage import risk
from triage.risk import thresholds_choose

SETTINGS = ((0.01, 1000, 0), (0.01, 3000, 0), (0.01, 3000, 1), (0.05, 800, 0), (0.05, 1500, 0), (0.05, 1500, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=300)
    args = parser.parse_args()
    product_share = risk.FALLBACK_SHARE
    figures = []
    for target, n, mistakes in SETTINGS:
        for share in (0.0, product_share):
            risk.FALLBACK_SHARE = share
            rng = numpy.random.default_rng(11)
            coverage, nothing, honoured = [], 0, 0
            for _ in range(args.draws):
                scores = rng.uniform(size=n)
                wrong = rng.uniform(size=n) < 10 * target * (1 - scores) ** 2
                if mistakes:
                    wrong[numpy.argsort(-scores)[rng.choice(40, size=mistakes, replace=False)]] = True
                choice = thresholds_choose(
                    scores=scores, correct=~wrong, categories=["a"] * n, target=target, confidence=0.9,
                    min_per_category=30,
                )  # fmt: skip
                threshold = choice.threshold_for("a")
                nothing += threshold is None
                coverage.append(0.0 if threshold is None else 1 - threshold)
                true_error = (
                    10 * target * (1 - threshold) ** 2 / 3 + mistakes / (n * (1 - threshold)) if threshold else 0
                )
                honoured += threshold is None or true_error <= target
            row = {
                "target": target,
                "tickets": n,
                "confident_mistakes": mistakes,
                "fallback_share": share,
                "mean_coverage": round(float(numpy.mean(coverage)), 3),
                "nothing_certified": nothing,
                "honoured": honoured,
                "draws": args.draws,
            }
            figures.append(row)
            print(
                f"target {target:.0%}, {n} tickets, {mistakes} confident mistake(s), fallback share {share:.1f}: "
                f"mean coverage {row['mean_coverage']:.3f}, nothing certified in {nothing} of {args.draws} draws, "
                f"target honoured in {honoured}",
                flush=True,
            )
    risk.FALLBACK_SHARE = product_share
    print(json.dumps({"settings": figures}))


if __name__ == "__main__":
    main()
