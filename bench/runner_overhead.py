"""The durable runner's cost per ticket, side by side with the field, on the same steps and server.

Every variant runs the product's own seven steps (`triage.pipeline.steps.CHAIN`: retrieve, classify,
lookup, draft, validate, route, execute), with the two models stubbed (a fixed embedding, a fixed
prediction; the drafter is the product's local one) and the admin's configuration read once (the
runner's own cached copy, `chain_settings_current`), so that what is left between them is what each
orchestration adds. Five variants run in one process, on the embedded PostgreSQL, in one
throw-away database (`isolated_database`), interleaved in rounds so that drift affects all alike (each
round starting with the next variant, so none is always first or last; `--rounds 5` starts each once).
In a round each variant works the round's tickets in one block, a few seconds of steady work as a worker
does it; `--slice N` has the variants take turns every N tickets instead (each slice starting with the
next variant), so that the shared machine's other work falls on all of them alike. Taking turns costs
each variant a cold start at every turn, more for some than for others: on 2026-11-30 LangGraph's default
cost 24.9-29.3 ms a ticket in blocks, 27.0-28.4 in slices of 20 and 28.1-32.8 in slices of 5 (three runs of
each, in turn). The figures the README gives are from blocks.

- the durable runner (`run_pipeline`: checkpoints, the advisory lock, gate verdicts, routing, actions). A
  fresh run that pays for nothing, as here, costs it three round trips, none waiting for the disk flush: one
  takes the run (lock, claim, read, a check that the process's copy of the configuration still holds), one
  is the knowledge-base search, one closes it (every step's checkpoint, held in memory until then, the
  recorded actions, the run's close, the commit, then the lock's release). A paid step's checkpoint, or an
  action sent out, would each add a flushed commit as it happens (see `triage.pipeline.runner`);
- the same steps as plain function calls on one state (no durability at all: the floor);
- LangGraph with its PostgresSaver, default durability (a checkpoint after every step) and
  `durability="exit"` (one checkpoint when the graph ends);
- a psycopg chain that writes every step's output in one transaction per ticket.

Outside the runner a step is called on a `RunState` built from the graph's state (the contracts the steps
hand one another, the verdicts, the route), so LangGraph checkpoints what the runner's `RunState` would
need to resume, and the execute step's actions are prepared and not written (the psycopg chain writes
each step's output, as the runner's checkpoints hold it). Tickets are ingested before each timed batch,
so no variant pays for ingest.

Until 2026-11-30 the other variants ran five hand-written copies of the steps. Those read the categories
and the gate policy from the database for every ticket (the runner reads them once a process), which
added to every other variant's cost and so favoured the runner's ratios; and they lacked the look-up, the
reply's money gate and execute, so LangGraph had five nodes to checkpoint instead of the chain's seven,
which favoured LangGraph. Run in turn on one machine (README, Benchmarks) the old bench printed 0.44x and
0.48x LangGraph's default, this one 0.41x and 0.40x (and 0.34x in two runs just before).

LangGraph is in the optional `bench` dependency group (`uv sync --group bench`); without it the bench
says so and measures the other three.

Each variant is printed with its cost per ticket and the runner's ratio to it, then with what it adds to
the plain calls (its cost minus theirs: what the orchestration and its durability cost, the steps' own
work taken out) and the runner's ratio on that; then the runner's ratio to LangGraph's default round by
round. The JSON line holds the five medians and the four `*_over_plain_ms` differences.

Django's DEBUG is off unless `DJANGO_DEBUG` says otherwise (`DJANGO_DEV_MODE=1` would turn it on), as in
production: with it Django also logs every query it sends, which only the variants that go through Django
would pay (until 2026-11-30 09:00 UTC the bench ran with it on).

    uv run --group bench python bench/runner_overhead.py [--tickets 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEBUG", "0")  # as in production (see above)

import django

django.setup()

import numpy as np
import psycopg
from django.db import connection
from psycopg.types.json import Jsonb

from triage import embedding as embedding_module
from triage.contracts import Classification, Draft, Retrieval, TicketIn, ToolLookup, Verdict
from triage.evaluation import isolated_database
from triage.models import Article, Category, Chunk, PipelineRun, Ticket, TrainedClassifier
from triage.pipeline import router as router_module
from triage.pipeline.router import Router
from triage.pipeline.runner import run_pipeline
from triage.pipeline.steps import CHAIN, RunState, Step, StepSkipped
from triage.selectors import ChainSettings, chain_settings_current, chain_settings_fingerprint
from triage.services import ticket_ingest

try:
    from langgraph.checkpoint.postgres import PostgresSaver
    from langgraph.graph import END, START, StateGraph
except ImportError:  # the optional `bench` group is not installed
    StateGraph = None

RNG = np.random.default_rng(7)
VECTOR = (lambda v: v / np.linalg.norm(v))(RNG.normal(size=384).astype(np.float32))
TEXT = "Where is my order? It has been a week and tracking has not moved since it left the roastery."


@dataclass(frozen=True)
class FixedPrediction:
    label: str | None = "order_status"
    confidence: float = 0.97
    alternatives: tuple[tuple[str, float], ...] = (("order_status", 0.97),)
    probabilities: tuple[float, ...] = (1.0,)  # one per label of the classifier, as `IntentClassifier` gives
    out_of_scope: bool = False
    nearest_similarity: float = 0.9


class StubClassifier:
    labels = ("order_status",)

    def predict(self, *, texts, embeddings):
        return [FixedPrediction() for _ in texts]


def stub_models() -> None:
    embedding_module.embed_texts = lambda texts, **kw: np.tile(VECTOR, (len(texts), 1))  # type: ignore[assignment]  # a stub model
    router_module.classifier_load = lambda pk: StubClassifier()  # type: ignore[assignment]  # a stub model


def seed() -> None:
    Category.objects.create(label="order_status", name="Order status")
    Category.objects.create(label="refund_request", name="Refund request", money=True)
    TrainedClassifier.objects.create(
        model="stub", blob=b"", labels=["order_status"], example_count=0, suggested_threshold=0.5
    )
    for a in range(20):
        article = Article.objects.create(slug=f"a{a}", title=f"Article {a}", body="")
        for c in range(4):
            noise = RNG.normal(scale=0.02, size=384).astype(np.float32)
            Chunk.objects.create(
                article=article,
                ordinal=c,
                embedding=(VECTOR + noise) / np.linalg.norm(VECTOR + noise),
                text=f"Your order ships within two working days from our roastery. "
                f"You can track order number {a}-{c} from Account > Orders.",
            )


# --- The chain's steps, shared by the plain chain, LangGraph and the psycopg chain ------------------------
#
# The product's own step objects (`triage.pipeline.steps.CHAIN`: retrieve, classify, lookup, draft, validate,
# route, execute), the very code the runner runs, each called on a `RunState` built from the graph's state
# and from one copy of the configuration (`ChainSettings`, read once, as the runner reads it once a process
# and checks it with its claim). What differs between the variants is then only the orchestration: the
# runner's lock, claim, checkpoints, spans and close against LangGraph's checkpoints or one transaction.


class ChainState(TypedDict, total=False):
    text: str
    retrieval: Retrieval | None
    classification: Classification | None
    lookup: ToolLookup | None
    draft: Draft | None
    verdicts: list[Verdict]
    passed: bool
    route: str


@dataclass
class Configuration:
    """What every variant's steps read: the configuration (read once) and the router, as the runner has them."""

    chain: ChainSettings
    router: Router
    run: PipelineRun


CONFIGURATION: Configuration | None = None


def configuration_load() -> Configuration:
    """The configuration as the runner reads it (`chain_settings_current`: the same cached copy) and an unsaved
    run of a ticket from the bench's source, whose actions are recorded only, as the runner's are."""
    sql, params = chain_settings_fingerprint()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fingerprint = cursor.fetchone()[0]
    ticket = Ticket(source="bench", external_id="shared", body=TEXT)
    return Configuration(
        chain=chain_settings_current(fingerprint=fingerprint),
        router=Router.for_run(PipelineRun()),
        run=PipelineRun(ticket=ticket),
    )


def chain_step(step: Step) -> Callable[[ChainState], tuple[ChainState, dict[str, Any]]]:
    """`step` as a function of the graph's state: a `RunState` built from it, the step run; what it changed,
    and its output as the runner's checkpoint records it (which the psycopg chain writes).

    The state holds what the steps hand one another (the contracts, the verdicts, the route), as the runner's
    `RunState` does: enough for LangGraph to resume from any of its checkpoints. The outputs are not added to
    it: they repeat the contracts, and LangGraph would write them again in every checkpoint."""

    def run(state: ChainState) -> tuple[ChainState, dict[str, Any]]:
        assert CONFIGURATION is not None
        c = CONFIGURATION
        run_state = RunState(
            run=c.run,
            ticket=c.run.ticket,
            policy=c.chain.policy,
            categories=c.chain.categories,
            router=c.router,
            action_kinds=c.chain.action_kinds,
            retrieval=state.get("retrieval"),
            classification=state.get("classification"),
            lookup=state.get("lookup"),
            draft=state.get("draft"),
            verdicts=list(state.get("verdicts", [])),
            passed=state.get("passed", False),
            route=state.get("route", ""),
        )
        try:
            result = step.run(run_state)
            output, verdicts = result.output, result.verdicts
        except StepSkipped as skip:
            output, verdicts = {"skipped": str(skip)}, []
        after: ChainState = {
            "retrieval": run_state.retrieval,
            "classification": run_state.classification,
            "lookup": run_state.lookup,
            "draft": run_state.draft,
            "passed": run_state.passed,
            "route": run_state.route,
        }
        # Only what the step changed, as a LangGraph node returns its update (each changed key is a new
        # version of that channel in the next checkpoint; an unchanged one is not written again).
        update: ChainState = {key: value for key, value in after.items() if state.get(key) is not value}  # type: ignore[assignment]
        if verdicts:
            update["verdicts"] = run_state.verdicts + verdicts
        return update, output

    return run


CHAIN_STEPS: tuple[tuple[str, Callable[[ChainState], tuple[ChainState, dict[str, Any]]]], ...] = tuple(
    (step.name, chain_step(step)) for step in CHAIN
)


def plain_chain(text: str) -> tuple[ChainState, dict[str, dict[str, Any]]]:
    """The steps as plain calls (no checkpoints, no lock, no routing records); the state, each step's output."""
    state: ChainState = {"text": text}
    outputs = {}
    for name, step in CHAIN_STEPS:
        update, outputs[name] = step(state)
        state.update(update)
    assert state["route"] == "auto", state.get("verdicts")
    return state, outputs


def graph_node(step: Callable[[ChainState], tuple[ChainState, dict[str, Any]]]) -> Callable[[ChainState], ChainState]:
    """A LangGraph node: the step's update to the state."""
    return lambda state: step(state)[0]


PSYCOPG_SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_run (id bigserial PRIMARY KEY, ticket text NOT NULL, route text NOT NULL);
CREATE TABLE IF NOT EXISTS bench_step (
    run_id bigint NOT NULL REFERENCES bench_run(id), step text NOT NULL, output jsonb NOT NULL,
    PRIMARY KEY (run_id, step)
);
"""


def psycopg_chain(conn: psycopg.Connection, ticket: str, text: str) -> None:
    """The steps as plain calls, then every step's output written in one transaction."""
    state, outputs = plain_chain(text)
    with conn.transaction(), conn.cursor() as cursor:
        cursor.execute("INSERT INTO bench_run (ticket, route) VALUES (%s, %s) RETURNING id", [ticket, state["route"]])
        run_id = cursor.fetchone()[0]
        cursor.executemany(
            "INSERT INTO bench_step (run_id, step, output) VALUES (%s, %s, %s)",
            [(run_id, name, Jsonb(output)) for name, output in outputs.items()],
        )


def langgraph_graph(saver: Any) -> Any:
    builder = StateGraph(ChainState)
    previous = START
    for name, step in CHAIN_STEPS:
        builder.add_node(name, graph_node(step))
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder.compile(checkpointer=saver)


def conninfo() -> str:
    """The connection string of the database Django uses now (the embedded server's socket included)."""
    params = connection.get_connection_params()
    keys = ("dbname", "user", "password", "host", "port")
    return psycopg.conninfo.make_conninfo(**{k: str(params[k]) for k in keys if params.get(k)})


def round_ms(tickets: int, slice_size: int, variants: list[tuple[str, Callable[[int], None]]]) -> dict[str, float]:
    """One round: every variant works the round's tickets, in slices of `slice_size` tickets taken in turn
    (each slice starting with the next variant), so that what the shared machine does meanwhile falls on
    every variant alike; each variant's time per ticket."""
    spent = dict.fromkeys((key for key, _ in variants), 0.0)
    for number, first in enumerate(range(0, tickets, slice_size)):
        shift = number % len(variants)
        for key, work in variants[shift:] + variants[:shift]:
            start = time.perf_counter()
            for i in range(first, min(first + slice_size, tickets)):
                work(i)
            spent[key] += time.perf_counter() - start
    return {key: seconds * 1000 / tickets for key, seconds in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--slice",
        type=int,
        help="tickets a variant works before the next takes its turn (default: the whole round, one block each)",
    )
    args = parser.parse_args()
    args.slice = args.slice or args.tickets
    if min(args.tickets, args.rounds, args.slice) < 1:
        parser.error("--tickets, --rounds and --slice must each be at least 1")
    if StateGraph is None:
        print(
            "LangGraph is not installed (the optional `bench` dependency group): measuring the runner, plain calls "
            "and the psycopg chain only. For all five: uv sync --group bench, or uv run --group bench ...",
            file=sys.stderr,
        )
    stub_models()
    times: dict[str, list[float]] = {
        "runner_ms": [],
        "plain_ms": [],
        "langgraph_postgres_ms": [],
        "langgraph_exit_ms": [],
        "psycopg_one_transaction_ms": [],
    }
    global CONFIGURATION
    with isolated_database():
        seed()
        CONFIGURATION = configuration_load()
        router = CONFIGURATION.router
        dsn = conninfo()
        with psycopg.connect(dsn) as pg, psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as lg_conn:
            pg.execute(PSYCOPG_SCHEMA)
            pg.commit()
            graph = None
            if StateGraph is not None:
                saver = PostgresSaver(lg_conn)
                saver.setup()
                graph = langgraph_graph(saver)
            serial = 0
            for round_index in range(args.rounds):
                run_ids = []
                for _ in range(args.tickets):
                    serial += 1
                    ingested = ticket_ingest(
                        ticket_in=TicketIn(source="bench", external_id=str(serial), body=TEXT), enqueue=False
                    )
                    run_ids.append(ingested.run.pk)

                def runner(i: int, run_ids: list[int] = run_ids) -> None:
                    run = run_pipeline(run_id=run_ids[i], router=router.fresh())
                    assert run.status == PipelineRun.Status.COMPLETED, run.status

                variants: list[tuple[str, Callable[[int], None]]] = [
                    ("runner_ms", runner),
                    ("plain_ms", lambda i: plain_chain(TEXT)),
                    ("psycopg_one_transaction_ms", lambda i, s=serial: psycopg_chain(pg, f"{s}-{i}", TEXT)),
                ]
                if graph is not None:
                    for key, durability in (("langgraph_postgres_ms", None), ("langgraph_exit_ms", "exit")):

                        def langgraph(i: int, durability: Any = durability, key: str = key, s: int = serial) -> None:
                            config = {"configurable": {"thread_id": f"{key}-{s}-{i}"}}
                            final = graph.invoke({"text": TEXT}, config, durability=durability)
                            assert final["route"] == "auto"

                        variants.append((key, langgraph))
                # Each round starts with the next variant: none always runs first, right after the tickets
                # were ingested (when the server may be vacuuming or writing them out), nor always last.
                shift = round_index % len(variants)
                for key, value in round_ms(args.tickets, args.slice, variants[shift:] + variants[:shift]).items():
                    times[key].append(value)
    medians = {key: round(statistics.median(values), 2) if values else None for key, values in times.items()}
    runner, plain = medians["runner_ms"], medians["plain_ms"]
    assert runner is not None and plain is not None
    print(
        f"tickets per round: {args.tickets}, rounds: {args.rounds}, the variants taking turns every {args.slice} "
        "tickets (medians of the rounds, ms per ticket)"
    )
    labels = {
        "runner_ms": "durable runner (run_pipeline)",
        "plain_ms": "plain function calls",
        "langgraph_postgres_ms": "LangGraph + PostgresSaver (default)",
        "langgraph_exit_ms": 'LangGraph + PostgresSaver ("exit")',
        "psycopg_one_transaction_ms": "psycopg, one transaction/ticket",
    }
    # Two readings of "cost per ticket": the whole ticket (the steps' own work included, the same in every
    # variant), and what the orchestration adds to the plain calls (the checkpoints, the lock, the records).
    overheads: dict[str, float | None] = {}
    print(f"{'':38s}  {'ms/ticket':>9}  {'runner/this':>11}  {'over plain':>10}  {'runner/this':>11}")
    for key, label in labels.items():
        value = medians[key]
        if value is None:
            print(f"{label:38s}:       n/a  (install the `bench` group)")
            continue
        if key != "plain_ms":
            overheads[key.removesuffix("_ms") + "_over_plain_ms"] = round(value - plain, 2)
        added = value - plain
        added_ratio = f"{(runner - plain) / added:10.2f}x" if key != "plain_ms" and added > 0 else f"{'':>11}"
        added_text = f"{added:10.2f}" if key != "plain_ms" else f"{'':>10}"
        print(f"{label:38s}: {value:9.2f}  {runner / value:10.2f}x  {added_text}  {added_ratio}")
    # The ratio in each round (the runner and LangGraph measured minutes apart at most), beside the ratio of the
    # medians: on a shared machine the rounds differ more than the variants within one round do.
    if times["langgraph_postgres_ms"]:
        per_round = [r / g for r, g in zip(times["runner_ms"], times["langgraph_postgres_ms"], strict=True)]
        print(
            "runner / LangGraph default, round by round: "
            + " ".join(f"{ratio:.2f}x" for ratio in per_round)
            + f" (median {statistics.median(per_round):.2f}x)"
        )
    print(json.dumps(medians | overheads))


if __name__ == "__main__":
    main()
