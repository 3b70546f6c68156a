"""The learning curve's calibration replayed offline: when a threshold certified at the target is over it
in a window, was the certificate wrong, and how often does that happen on other streams?

`bench/learning_curve.py` runs the whole chain in a database (10-20 minutes on a loaded machine). This
replays only what decides automation, in a minute and without a database: the seed classifier (the first
`--seed-per-category` examples of each category, as the bench takes them), its out-of-fold calibration
entries, and the stream of tickets in windows of `--window`. At the start of each window the thresholds
are chosen (`triage.risk.thresholds_choose`, the product's chooser) on the out-of-fold entries plus the
labels of every ticket sent to a person so far; a ticket the thresholds auto-handle gets no label (the
bench's simulated agent marks nothing mishandled). No retraining: in the bench no challenger has been
promoted, so the seed classifier is the one in force throughout.

For every threshold in force it prints, beside the window's mishandled count, the classifier's error at
that threshold on a much larger sample of the same traffic (every ticket of the dataset, and every
example not in the seed): the *population* error the guarantee is about. A window over the target while
the population error is under it is the luck of a small window, not a broken certificate.

Draw 0 is the bench's own stream (seed examples and tickets in file order). `--draws N` adds N streams
with the seed examples and the ticket order drawn at random, to see how often a certificate is wrong
(the guarantee allows 1 - confidence of them) and how often some window is over the target anyway.

    uv run python bench/calibration_replay.py [--dataset ../shared/datasets/banking77] [--draws 24]
                                              [--seed-per-category 10] [--window 500] [--target 0.01]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from integrations.embeddings import get_local_embedder
from triage.classifier import IntentClassifier
from triage.datasets import dataset_load
from triage.risk import DEFAULT_CONFIDENCE, DEFAULT_MIN_PER_CATEGORY, DEFAULT_TARGET, ThresholdChoice, thresholds_choose

#: (confidence, right, predicted category) of one labelled ticket.
Row = tuple[float, bool, str]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "banking77")
    parser.add_argument("--seed-per-category", type=int, default=10)
    parser.add_argument("--window", type=int, default=500)
    parser.add_argument("--draws", type=int, default=0, help="Random streams besides the bench's own.")
    parser.add_argument("--target", type=float, default=DEFAULT_TARGET)
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE)
    args = parser.parse_args()

    started = time.monotonic()
    data = dataset_load(args.dataset)
    embedder = get_local_embedder()
    example_vectors = embedder.embed([e.text for e in data.examples])
    ticket_vectors = embedder.embed([t.text for t in data.tickets])
    print(f"{data.name}: {len(data.examples)} examples, {len(data.tickets)} tickets embedded", flush=True)
    draws = [_replay(data, example_vectors, ticket_vectors, args, draw) for draw in range(args.draws + 1)]
    looks = [w for d in draws for w in d["windows"] if w["threshold"] is not None]
    summary = {
        "dataset": data.name,
        "target": args.target,
        "confidence": args.confidence,
        "draws": len(draws),
        "bench_stream": draws[0],
        # Over every draw: thresholds in force, those whose population error exceeds the target (the
        # guarantee's failures), and streams with some window over the target all the same.
        "windows_automated": len(looks),
        "windows_population_over_target": sum(1 for w in looks if w["population_error"] > args.target),
        "windows_over_target": sum(1 for w in looks if w["mishandled"] > args.target * w["auto_handled"]),
        "streams_with_a_window_over_target": sum(
            1 for d in draws if any(w["mishandled"] > args.target * w["auto_handled"] for w in d["windows"])
        ),
        "streams_automating": sum(1 for d in draws if any(w["auto_handled"] for w in d["windows"])),
        # Streams where some threshold in force was over the target on the population (tickets and unused
        # examples), or on the dataset's tickets alone: the certificate itself was wrong there.
        "streams_certificate_over_target": sum(
            1
            for d in draws
            if any(w["threshold"] is not None and w["population_error"] > args.target for w in d["windows"])
        ),
        "streams_certificate_over_target_on_tickets": sum(
            1
            for d in draws
            if any(w["threshold"] is not None and w["tickets_error"] > args.target for w in d["windows"])
        ),
        "seconds": round(time.monotonic() - started, 1),
    }
    print(json.dumps(summary, sort_keys=True))


def _replay(data, example_vectors, ticket_vectors, args, draw: int) -> dict[str, Any]:
    """One stream: the seed classifier, the thresholds at each window start, what each window did."""
    rng = numpy.random.default_rng(draw) if draw else None
    order = rng.permutation(len(data.examples)) if rng is not None else numpy.arange(len(data.examples))
    taken: dict[str, int] = defaultdict(int)
    seed = []
    for i in order:
        if taken[data.examples[i].label] < args.seed_per_category:
            taken[data.examples[i].label] += 1
            seed.append(int(i))
    money = frozenset(data.money_labels)
    model = IntentClassifier.fit(
        texts=[data.examples[i].text for i in seed],
        embeddings=example_vectors[seed],
        labels=[data.examples[i].label for i in seed],
    )
    stored = model.calibration
    out_of_fold = [
        (float(s), bool(r), str(c))
        for s, r, c in zip(stored["scores"], stored["correct"], stored["categories"], strict=True)
        if c not in money
    ]
    stream = rng.permutation(len(data.tickets)) if rng is not None else numpy.arange(len(data.tickets))
    tickets = _rows(
        model,
        [data.tickets[i].text for i in stream],
        ticket_vectors[stream],
        [data.tickets[i].label for i in stream],
        money,
    )
    unused = numpy.setdiff1d(numpy.arange(len(data.examples)), seed)
    examples = _rows(
        model,
        [data.examples[i].text for i in unused],
        example_vectors[unused],
        [data.examples[i].label for i in unused],
        money,
    )
    population = [r for r in tickets + examples if r is not None]
    ticket_rows = [r for r in tickets if r is not None]

    labelled: list[Row] = []
    windows = []
    for start in range(0, len(tickets), args.window):
        calibration = out_of_fold + labelled
        choice = thresholds_choose(
            scores=[r[0] for r in calibration],
            correct=[r[1] for r in calibration],
            categories=[r[2] for r in calibration],
            target=args.target,
            confidence=args.confidence,
            min_per_category=DEFAULT_MIN_PER_CATEGORY,
        )
        auto = wrong = 0
        for row in tickets[start : start + args.window]:
            if row is None:
                continue  # out of scope or money-moving: a person decides it, and it says nothing here
            threshold = choice.threshold_for(row[2])
            if threshold is not None and row[0] >= threshold:
                auto += 1
                wrong += not row[1]
            else:
                labelled.append(row)
        population_accepted, population_wrong = _accepted(choice, population)
        tickets_accepted, tickets_wrong = _accepted(choice, ticket_rows)
        windows.append(
            {
                "tickets": f"{start + 1}-{min(len(tickets), start + args.window)}",
                "threshold": choice.threshold,
                "calibration": f"{choice.errors} wrong of {choice.accepted} accepted, of {len(calibration)}",
                "auto_handled": auto,
                "mishandled": wrong,
                "population_error": population_wrong / population_accepted if population_accepted else 0.0,
                "population": f"{population_wrong} of {population_accepted}",
                "all_tickets": f"{tickets_wrong} of {tickets_accepted}",
                "tickets_error": tickets_wrong / tickets_accepted if tickets_accepted else 0.0,
            }
        )
    if draw == 0:
        for w in windows:
            threshold = "none" if w["threshold"] is None else f"{w['threshold']:.3f}"
            print(
                f"window {w['tickets']:>11}: threshold {threshold} (calibration {w['calibration']})  "
                f"{w['mishandled']} of {w['auto_handled']} auto-handled wrong; at that threshold: population "
                f"{w['population']}, all tickets {w['all_tickets']}",
                flush=True,
            )
        for t in (0.95, 0.98, 0.984, 0.99, 0.995):
            print(
                f"  at {t}: out-of-fold {_at(out_of_fold, t)}, unused examples {_at([r for r in examples if r], t)}, "
                f"tickets {_at(ticket_rows, t)} (wrong of accepted)",
                flush=True,
            )
    return {"draw": draw, "windows": windows}


def _rows(model: IntentClassifier, texts, vectors, truth, money) -> list[Row | None]:
    """(confidence, right, predicted) per text; None where no threshold decides it (out of scope, money)."""
    out: list[Row | None] = []
    for p, label in zip(model.predict(texts=texts, embeddings=vectors), truth, strict=True):
        out.append(None if p.label is None or p.label in money else (p.confidence, p.label == label, p.label))
    return out


def _accepted(choice: ThresholdChoice, rows: list[Row]) -> tuple[int, int]:
    accepted = wrong = 0
    for score, right, category in rows:
        threshold = choice.threshold_for(category)
        if threshold is not None and score >= threshold:
            accepted += 1
            wrong += not right
    return accepted, wrong


def _at(rows: list[Row], threshold: float) -> str:
    above = [r for r in rows if r[0] >= threshold]
    return f"{sum(1 for r in above if not r[1])}/{len(above)}"


if __name__ == "__main__":
    main()
