"""Confidence ranking: the product's confidence model beside a candidate, on the same fit and the same tickets.

Issue 13 asks the ranking of confidence to improve (the accuracy will not move much; what the thresholds can
certify depends on how well confidence separates right answers from wrong ones). This measures a change to
the confidence model before it goes into `triage.classifier`, without a database: it fits the product's
classifier on the dataset's examples (`IntentClassifier.fit`), recomputes the out-of-fold pieces that fit
used (the folds' scores and per-category similarities, the unseen-category sample), and fits on them

- `current`: the product's confidence model (its five `_meta_features`, learned from the in-scope examples).
  Its out-of-fold confidences must equal the fitted classifier's calibration entries, or the bench stops:
  what it compares against is the product itself, not a copy that drifted.
- `candidate`: four more features (how much nearer the predicted category's nearest example is than any
  other category's, how far the nearest category stands out from the next, the runner-up's probability
  margin over the third, the entropy), learned from the in-scope examples *and* the unseen-category
  examples the similarity filter lets through (always wrong answers).

For each it prints the out-of-fold log loss and ROC AUC (how well confidence predicts a right answer; the
unseen-category examples included), then, per target and out-of-scope share, what the product's chooser
(`triage.autonomy.calibration_examples` + `triage.risk.thresholds_choose`, per category and pooled)
certifies on that model's calibration data and what those thresholds do on the tickets: auto-handled (in
scope, predicted in a category that does not move money, confidence at its category's threshold), wrong
among them, and the share of the automatable tickets automated. Only the confidence gate: `evaluate` runs the
whole chain (text money rules, retrieval, groundedness) and so automates a little less.

    DJANGO_DEV_MODE=1 uv run python bench/confidence_ranking.py [--dataset ../shared/datasets/banking77]
        [--targets 0.005,0.01,0.02] [--shares 0.05,0] [--confidence 0.9]

Ends with one JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()  # triage.autonomy's models are imported, never queried: no database is used

from scipy.special import expit, softmax
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold

from integrations.embeddings import get_local_embedder
from triage import classifier as product
from triage.autonomy import calibration_examples
from triage.datasets import dataset_load
from triage.risk import DEFAULT_CONFIDENCE, DEFAULT_MIN_PER_CATEGORY, thresholds_choose


def candidate_features(probabilities: numpy.ndarray, class_sims: numpy.ndarray) -> numpy.ndarray:
    """The product's five features and four more (module docstring)."""
    rows = numpy.arange(probabilities.shape[0])
    top = probabilities.argmax(axis=1)
    others = class_sims.copy()
    others[rows, top] = -numpy.inf
    sims = numpy.sort(class_sims, axis=1)
    logs = numpy.log(numpy.sort(probabilities, axis=1) + 1e-9)
    third = logs[:, -3] if probabilities.shape[1] > 2 else numpy.full(len(rows), -20.0)
    return numpy.column_stack(
        [
            product._meta_features(probabilities, class_sims),
            class_sims[rows, top] - others.max(axis=1),
            sims[:, -1] - sims[:, -2],
            logs[:, -2] - third,
            -(probabilities * numpy.log(probabilities + 1e-12)).sum(axis=1),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "banking77")
    parser.add_argument("--targets", default="0.005,0.01,0.02")
    parser.add_argument("--shares", default="0.05,0", help="Shares of requests no category covers to calibrate for.")
    parser.add_argument("--confidence", type=float, default=DEFAULT_CONFIDENCE)
    args = parser.parse_args()
    targets = [float(t) for t in args.targets.split(",")]
    shares = [float(s) for s in args.shares.split(",")]
    started = time.monotonic()

    data = dataset_load(args.dataset)
    embedder = get_local_embedder()
    texts, labels = [e.text for e in data.examples], [e.label for e in data.examples]
    example_vectors = embedder.embed(texts)
    ticket_vectors = embedder.embed([t.text for t in data.tickets])
    model = product.IntentClassifier.fit(texts=texts, embeddings=example_vectors, labels=labels)
    pieces = _pieces(model, texts, example_vectors, labels)
    tickets = _ticket_pieces(model, data, ticket_vectors)
    money = set(data.money_labels)
    automatable = sum(tickets["automatable"])
    print(
        f"{data.name}: {len(texts)} examples, {len(data.tickets)} tickets ({automatable} automatable), "
        f"out-of-fold accuracy {model.stats['cv_accuracy']:.1%}, {len(pieces['unseen_probs'])} unseen-category "
        f"examples let through of {pieces['unseen_sampled']} sampled"
    )
    figures: dict[str, Any] = {"dataset": data.name, "automatable_tickets": automatable, "models": {}}
    for name, features, with_unseen in (
        ("current", product._meta_features, False),
        ("candidate", candidate_features, True),
    ):
        calibration, confidence, quality = _confidence_model(pieces, tickets, features, with_unseen=with_unseen)
        if name == "current" and not (
            numpy.allclose(calibration["scores"], model.calibration["scores"], atol=2e-6)
            and numpy.allclose(confidence, tickets["product_confidence"], atol=1e-6)
        ):
            raise SystemExit("the replica of the confidence model is not the product's: bring it in line first")
        print(f"\n{name}: out-of-fold log loss {quality['log_loss']:.4f}, ROC AUC {quality['roc_auc']:.4f}")
        print("  share  target  certified pooled  auto-handled  wrong among them  automatable automated")
        rows = []
        for share in shares:
            calibration_set = calibration_examples(calibration, share=share, money_labels=money)
            for target in targets:
                choice = thresholds_choose(
                    scores=calibration_set.scores,
                    correct=calibration_set.correct,
                    categories=calibration_set.categories,
                    target=target,
                    confidence=args.confidence,
                    min_per_category=DEFAULT_MIN_PER_CATEGORY,
                )
                handled, wrong, of_automatable = _handled(choice, tickets, confidence, money)
                row = {
                    "share": share,
                    "target": target,
                    "pooled_threshold": choice.threshold,
                    "auto_handled": handled,
                    "wrong": wrong,
                    "automatable_share_automated": round(of_automatable / automatable, 4) if automatable else None,
                }
                rows.append(row)
                pooled = "refused" if choice.threshold is None else f"{choice.threshold:.4f}"
                among = f"{wrong / handled:.2%}" if handled else "n/a"
                print(
                    f"  {share:5.0%}  {target:6.2%}  {pooled:>16}  {handled:12d}  {wrong:5d} ({among:>6})  "
                    f"{row['automatable_share_automated'] or 0:19.1%}"
                )
        figures["models"][name] = {**quality, "rows": rows}
    figures["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures, sort_keys=True))


def _pieces(model: product.IntentClassifier, texts, vectors, labels) -> dict[str, Any]:
    """The out-of-fold scores and per-category similarities of the examples, and the unseen-category sample,
    computed as `IntentClassifier.fit` computes them (same folds, same seeds, same fits)."""
    index = {label: i for i, label in enumerate(model.labels)}
    y = numpy.asarray([index[label] for label in labels])
    n_classes = len(model.labels)
    fit_data = product._FitData(
        texts=list(texts),
        embeddings=product._normalize_rows(vectors),
        y=y,
        n_classes=n_classes,
        analyses=product._Analyses(list(texts)),
        random_state=0,
    )
    folds = list(StratifiedKFold(model.stats["cv_folds"], shuffle=True, random_state=0).split(texts, y))
    scores = numpy.zeros((len(y), n_classes))
    sims = numpy.zeros((len(y), n_classes), dtype=numpy.float32)
    with product._Fits(fit_data, processes=product._default_processes()) as fits:
        for (_, test), job in zip(folds, [fits.submit(product._fold_job, tr, te) for tr, te in folds], strict=True):
            scores[test], sims[test] = job.result()
        in_scope = int((sims.max(axis=1) >= model.oos_similarity).sum())
        unseen_scores, unseen_sims, sampled = product._unseen_category_sample(
            fits=fits, in_scope_count=in_scope, random_state=0
        )
    probabilities = softmax(scores / model._temperature, axis=1)
    unseen_probs = softmax(unseen_scores / model._temperature, axis=1)
    through = unseen_sims.max(axis=1) >= model.oos_similarity
    return {
        "probs": probabilities,
        "sims": sims,
        "correct": probabilities.argmax(axis=1) == y,
        "in_scope": sims.max(axis=1) >= model.oos_similarity,
        "unseen_probs": unseen_probs[through],
        "unseen_sims": unseen_sims[through],
        "unseen_sampled": sampled,
        "labels": model.labels,
    }


def _ticket_pieces(model: product.IntentClassifier, data, vectors) -> dict[str, Any]:
    """The tickets' probabilities and per-category similarities under the fitted classifier."""
    texts = [t.text for t in data.tickets]
    predictions = model.predict(texts=texts, embeddings=vectors)
    probabilities = numpy.asarray([p.probabilities for p in predictions])
    sims = model._neighbours.class_similarity(product._normalize_rows(vectors))
    return {
        "probs": probabilities,
        "sims": sims,
        "product_confidence": numpy.asarray([p.confidence for p in predictions]),
        "predicted": [model.labels[int(i)] for i in probabilities.argmax(axis=1)],
        "in_scope": [not p.out_of_scope for p in predictions],
        "truth": [t.label for t in data.tickets],
        "money": [bool(t.money) for t in data.tickets],
        "automatable": [
            t.label in data.categories and t.label not in data.money_labels and not t.money for t in data.tickets
        ],
    }


def _confidence_model(pieces, tickets, features, *, with_unseen: bool):
    """Fit one confidence model with the product's own fitting (`triage.classifier._confidence_fit`: logistic,
    out of fold over at most five inner folds): its calibration entries in the fitted classifier's format, the
    tickets' confidence and the out-of-fold quality (unseen-category examples included, as wrong answers)."""
    examples = features(pieces["probs"], pieces["sims"])
    unseen = features(pieces["unseen_probs"], pieces["unseen_sims"])
    correct = pieces["correct"]
    x = numpy.vstack([examples, unseen]) if with_unseen else examples
    y = numpy.concatenate([correct, numpy.zeros(len(unseen), dtype=bool)]) if with_unseen else correct
    out_of_fold, coef, intercept = product._confidence_fit(x, y, folds=int(min(5, (~correct).sum())), random_state=0)

    def confidence_of(rows: numpy.ndarray) -> numpy.ndarray:
        return expit(rows @ coef + intercept)

    example_confidence = out_of_fold[: len(correct)]
    # Without them in its training, the product scores the unseen-category sample with the final model.
    unseen_confidence = out_of_fold[len(correct) :] if with_unseen else confidence_of(unseen)
    in_scope = pieces["in_scope"]
    labels = pieces["labels"]
    top = pieces["probs"].argmax(axis=1)
    calibration = {
        "scores": [round(float(c), 6) for c in example_confidence[in_scope]]
        + [round(float(c), 6) for c in unseen_confidence],
        "correct": [bool(c) for c in correct[in_scope]] + [False] * len(unseen_confidence),
        "categories": [labels[int(i)] for i in top[in_scope]]
        + [labels[int(i)] for i in pieces["unseen_probs"].argmax(axis=1)],
        "out_of_scope_sampled": pieces["unseen_sampled"],
        "out_of_scope_in_calibration": len(unseen_confidence),
    }
    ticket_confidence = confidence_of(features(tickets["probs"], tickets["sims"]))
    judged = numpy.concatenate([example_confidence[in_scope], unseen_confidence])
    truth = numpy.concatenate([correct[in_scope], numpy.zeros(len(unseen_confidence), dtype=bool)])
    quality = {
        "log_loss": round(float(log_loss(truth, judged)), 4),
        "roc_auc": round(float(roc_auc_score(truth, judged)), 4),
    }
    return calibration, ticket_confidence, quality


def _handled(choice, tickets, confidence: numpy.ndarray, money: set[str]) -> tuple[int, int, int]:
    """Tickets the thresholds auto-handle on the confidence gate alone, how many of them are wrong (another
    category, or a ticket that asks for money to move), and how many are automatable (in scope, not money)."""
    handled = wrong = of_automatable = 0
    for i, category in enumerate(tickets["predicted"]):
        if not tickets["in_scope"][i] or category in money:
            continue
        threshold = choice.threshold_for(category)
        if threshold is None or confidence[i] < threshold:
            continue
        handled += 1
        wrong += category != tickets["truth"][i] or tickets["money"][i]
        of_automatable += tickets["automatable"][i]
    return handled, wrong, of_automatable


if __name__ == "__main__":
    main()
