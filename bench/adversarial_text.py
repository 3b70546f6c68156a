"""Worst-case time of the money detector and the gates on customer text built to be slow.

Each input family repeats a pathological piece (number words, spaced letters, digit runs, currency
signs, look-alike letters, half e-mail addresses...) to 1 KB, 10 KB and 100 KB (the intake limit),
runs every function that sees customer text on it a few times, and keeps the slowest run. For
comparison, the amount pattern is also run on Python's backtracking ``re`` (the engine it had before)
on the 240-character "a hundred " ticket from the issue, in a subprocess with a time limit.

No database and no Django set-up: the detector and the gates are plain functions.

    python3 -m uv run --frozen python bench/adversarial_text.py [--repeats 3] [--old-timeout 60]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from integrations.llm.local import boilerplate_lines
from triage.contracts import Draft, Passage, Retrieval
from triage.pipeline import gates
from triage.pipeline.money import money_signals

SIZES = (1_000, 10_000, 100_000)
DRAFT_LIMIT = 20_000

FAMILIES = {
    "number words": "a hundred ",
    "number words, hyphens": "twenty-five hundred a thousand ",
    "digit groups": "1,000",
    "digit run": "1234567890",
    "currency signs": "$€£",
    "spaced letters": "r e f u n d x ",
    "spaced separators": "a.b-c_d*",
    "leet words": "r3fund c@sh ",
    "override filler": "ignore the your ",
    "can-you requests": "can you send money ",
    "credit card talk": "credit it card ",
    "policy questions": "in which cases can ",
    "look-alikes and digits": "реfund ж ٣٠ ",
    "zero-width letters": "r\u200be\u200bf\u200bu\u200bn\u200bd ",
    "half e-mail addresses": "a.b@c.",
    "card-like digits": "4 1-",
    "capitalised words": "12 Abc Def ",
}

PASSAGE = Passage(
    chunk_id=1,
    article_id=1,
    article_title="Refunds",
    score=0.8,
    text="You can ask for a refund within 30 days of delivery. Write to help@example.com.",
)
RETRIEVAL = Retrieval(passages=[PASSAGE])


def repeat(piece: str, length: int) -> str:
    return (piece * (length // len(piece) + 1))[:length]


def functions(text: str) -> dict[str, Callable[[], object]]:
    draft = Draft(body=text[:DRAFT_LIMIT], citations=[1])
    return {
        "money_signals": lambda: money_signals(text),
        "gate_money": lambda: gates.gate_money(classification=None, category_moves_money=False, ticket_text=text),
        "gate_groundedness": lambda: gates.gate_groundedness(
            draft=draft, retrieval=RETRIEVAL, min_overlap=0.5, boilerplate=boilerplate_lines()
        ),
        "gate_personal_data": lambda: gates.gate_personal_data(draft=draft, retrieval=RETRIEVAL, requester=""),
    }


OLD_AMOUNT = """
import re, sys, time
from triage.pipeline.money import _AMOUNT
pattern = re.compile(_AMOUNT.pattern)  # the same pattern, on the backtracking engine it had before
body = ("a hundred " * 24)[:240]
started = time.perf_counter()
pattern.search(body)
print(time.perf_counter() - started)
"""


def old_amount_seconds(timeout: float) -> tuple[float | None, bool]:
    """Seconds the old engine takes on the issue's ticket, or (None, True) if it passes ``timeout``."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", OLD_AMOUNT],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=Path(__file__).resolve().parents[1],
            check=True,
        )
    except subprocess.TimeoutExpired:
        return None, True
    return float(done.stdout.strip()), False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--old-timeout", type=float, default=60.0)
    args = parser.parse_args()

    money_signals("warm up the caches")
    worst_by_function: dict[str, float] = {}
    rows = []
    for family, piece in FAMILIES.items():
        cells = []
        for size in SIZES:
            text = repeat(piece, size)
            worst_ms, worst_name = 0.0, ""
            for name, call in functions(text).items():
                for _ in range(args.repeats):
                    started = time.perf_counter()
                    call()
                    ms = (time.perf_counter() - started) * 1000
                    worst_by_function[name] = max(worst_by_function.get(name, 0.0), ms)
                    if ms > worst_ms:
                        worst_ms, worst_name = ms, name
            cells.append((worst_ms, worst_name))
        rows.append((family, cells))

    print(f"worst of {args.repeats} runs per function, slowest function named (ms)")
    print(f"{'input family':24}" + "".join(f"{f'{size // 1000} KB':>9}  {'':19}" for size in SIZES))
    for family, cells in rows:
        print(f"{family:24}" + "".join(f"{ms:9.1f}  {name:19}" for ms, name in cells))
    worst_overall = max(worst_by_function.values())
    print(
        f"worst overall: {worst_overall:.1f} ms; per function: "
        + ", ".join(f"{name} {ms:.1f}" for name, ms in worst_by_function.items())
    )

    old_seconds, timed_out = old_amount_seconds(args.old_timeout)
    if timed_out:
        print(f"old amount pattern on Python re, 240-char 'a hundred ' body: over {args.old_timeout:.0f} s (stopped)")
    else:
        print(f"old amount pattern on Python re, 240-char 'a hundred ' body: {old_seconds * 1000:.0f} ms")
    print(
        json.dumps(
            {
                "bench": "adversarial_text",
                "sizes": list(SIZES),
                "repeats": args.repeats,
                "worst_ms": round(worst_overall, 1),
                "worst_ms_by_function": {name: round(ms, 1) for name, ms in worst_by_function.items()},
                "old_amount_pattern_240_chars_ms": None if timed_out else round(old_seconds * 1000, 1),
                "old_amount_pattern_timed_out_after_s": args.old_timeout if timed_out else None,
            }
        )
    )


if __name__ == "__main__":
    main()
