"""A lost database connection is no verdict on a run: real connection losses (`pg_terminate_backend`, which
ends the server process behind a connection exactly as a server restart does) in the middle of a run, at the
start of a task and in the middle of a sweep.

The rows must be committed for the worker's connection to see them, so every query runs in a thread of its
own (Django gives each thread its own connection, in autocommit), outside pytest-django's per-test
transaction; the test deletes what it committed (a transactional test would flush the session's demo data).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.db.models import signals
from django.utils import timezone

from triage import durability, tasks
from triage.contracts import TicketIn
from triage.durability import connection_lost, rows_unflushed, run_lock
from triage.models import Action, PipelineRun, StepRun, Ticket
from triage.pipeline import runner
from triage.pipeline.router import Router
from triage.services import ticket_ingest

PASSWORD_TICKET = "I forgot my password and the reset email never arrives, how do I get back into my account?"


def in_thread(fn, *, timeout: float = 60.0):
    """Run `fn` on a connection of its own and return what it returned (or raise what it raised)."""
    outcome: dict = {}

    def target():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            outcome["error"] = exc
        finally:
            with contextlib.suppress(Exception):  # a terminated connection may fail to close; it is gone
                connection.close()

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{fn} still running after {timeout}s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def terminate(pid: int) -> None:
    """End the server process behind another connection, from a connection of its own (a real loss for it)."""

    def kill() -> bool:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            return bool(cursor.fetchone()[0])

    assert in_thread(kill), f"backend {pid} was not terminated"


@pytest.fixture
def committed_run(db):
    """A committed ticket and its queued run (deleted after the test, with its steps and actions)."""
    made: list[Ticket] = []

    def make() -> PipelineRun:
        def given():
            return ticket_ingest(
                ticket_in=TicketIn(source="test", external_id=f"dbloss-{uuid.uuid4().hex[:8]}", body=PASSWORD_TICKET),
                enqueue=False,
            ).run

        run = in_thread(given)
        made.append(run.ticket)
        return run

    yield make
    in_thread(lambda: [Ticket.objects.filter(pk=t.pk).delete() for t in made])


def test_a_connection_lost_mid_run_leaves_the_run_for_the_sweeper_which_finishes_it(committed_run, monkeypatch):
    # given: a worker half-way through a run (retrieve finished, classify under way)
    run = committed_run()
    reached, go_on = threading.Event(), threading.Event()
    worker_pid: dict[str, int] = {}
    classify = runner.STEPS["classify"]
    original = type(classify).run

    def classify_after_the_loss(self, state):
        if not reached.is_set():
            worker_pid["pid"] = backend_pid()
            reached.set()
            assert go_on.wait(20)
        return original(self, state)

    monkeypatch.setattr(type(classify), "run", classify_after_the_loss)
    outcome: dict = {}

    def worker() -> None:
        try:
            runner.run_pipeline(run_id=run.pk)
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome["error"] = exc
        finally:
            with contextlib.suppress(Exception):  # a terminated connection may fail to close; it is gone
                connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    assert reached.wait(60), "the run never reached classify"

    # when: its database connection is lost (the server process behind it ends), and the step goes on
    terminate(worker_pid["pid"])
    go_on.set()
    thread.join(60)

    # then: the worker stopped with the connection error; the run is not failed, only left RUNNING
    assert connection_lost(outcome["error"]), outcome
    left = in_thread(lambda: PipelineRun.objects.get(pk=run.pk))
    assert (left.status, left.error, left.takes) == (PipelineRun.Status.RUNNING, "", 1)
    assert in_thread(lambda: list(StepRun.objects.filter(run_id=run.pk, status=StepRun.Status.FAILED))) == []

    # when: its lease has expired and the sweeper runs (the 'immediate' queue works the run in the sweep)
    monkeypatch.setattr(type(classify), "run", original)
    past = timezone.now() - timedelta(minutes=10)
    in_thread(lambda: PipelineRun.objects.filter(pk=run.pk).update(lease_expires_at=past, queued_at=past))
    sweep = in_thread(tasks.runs_sweep)

    # then: handed back once and finished; every step finished once
    finished = in_thread(lambda: PipelineRun.objects.get(pk=run.pk))
    assert sweep.requeued == [run.pk]
    assert finished.status in (PipelineRun.Status.COMPLETED, PipelineRun.Status.WAITING)
    steps = in_thread(lambda: list(StepRun.objects.filter(run_id=run.pk, status__in=StepRun.FINISHED)))
    assert sorted(s.step for s in steps) == sorted({s.step for s in steps})


def test_a_task_started_on_a_connection_the_database_dropped_reconnects_and_works_the_run(committed_run):
    # given: a worker thread whose connection the server ended while it was idle between jobs
    run = committed_run()
    pid_ready, lost = threading.Event(), threading.Event()
    worker_pid: dict[str, int] = {}
    outcome: dict = {}

    def worker() -> None:
        try:
            worker_pid["pid"] = backend_pid()
            pid_ready.set()
            assert lost.wait(20)
            # when: it takes its next job
            tasks.InProcessWorker(workers=1)._work(run.pk)
            outcome["status"] = PipelineRun.objects.get(pk=run.pk).status
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=worker)
    thread.start()
    assert pid_ready.wait(20)
    terminate(worker_pid["pid"])
    lost.set()
    thread.join(60)

    # then: the dead connection was replaced before the run was taken, and the run ran to its end
    assert "error" not in outcome, outcome.get("error")
    assert outcome["status"] in (PipelineRun.Status.COMPLETED, PipelineRun.Status.WAITING)


def test_a_sweep_whose_connection_is_lost_fails_quietly_and_the_next_one_hands_the_run_back(committed_run, monkeypatch):
    # given: a run whose worker died, and a sweep that loses its connection half-way
    run = committed_run()
    past = timezone.now() - timedelta(minutes=10)
    in_thread(
        lambda: PipelineRun.objects.filter(pk=run.pk).update(
            status=PipelineRun.Status.RUNNING, lease_expires_at=past, queued_at=past, takes=1
        )
    )
    original = tasks.queue_holds
    losses = []

    def queue_holds_after_a_loss(run_id: int) -> bool:
        if not losses:
            losses.append(backend_pid())
            terminate(losses[0])
        return original(run_id)

    monkeypatch.setattr(tasks, "queue_holds", queue_holds_after_a_loss)

    # when: the sweeper loop sweeps twice
    first = in_thread(tasks.sweep_safely)
    second = in_thread(tasks.sweep_safely)

    # then: the first sweep failed without raising (its claim rolled back), the second finished the run
    assert (first, second) == (False, True)
    finished = in_thread(lambda: PipelineRun.objects.get(pk=run.pk))
    assert finished.status in (PipelineRun.Status.COMPLETED, PipelineRun.Status.WAITING)
    assert tasks.sweep_backoff(every=3.0, failures=0) == 3.0 and tasks.sweep_backoff(every=3.0, failures=5) == 12.0


def test_the_run_lock_lost_with_its_connection_is_released_without_an_error(committed_run):
    # given: a holder of a run's lock whose connection is lost while it holds it
    run = committed_run()

    def hold_and_lose() -> bool:
        with run_lock(run.pk) as held:
            terminate(backend_pid())
        return held

    # then: leaving the block raises nothing (the lock went with the session) and another holder gets it
    assert in_thread(hold_and_lose) is True

    def take() -> bool:
        with run_lock(run.pk) as held:
            return held

    assert in_thread(take) is True


def test_a_decision_taken_before_the_run_closed_as_waiting_is_not_lost(ingest, money_agent, monkeypatch):
    # given: a money ticket, and a person so quick they decide between the approval request's commit and
    # the run's close as waiting (the route step has committed the request; the runner has not closed yet)
    from approvals.models import ApprovalRequest
    from approvals.services import approval_decide

    route = runner.STEPS["route"]
    original = type(route).run

    def route_then_a_quick_decision(self, state):
        result = original(self, state)
        approval = ApprovalRequest.objects.get(run=state.run)
        approval_decide(approval_id=approval.pk, actor=money_agent, verdict="approve")
        return result

    monkeypatch.setattr(type(route), "run", route_then_a_quick_decision)
    run = ingest("My grinder arrived with the hopper cracked in two. I want my money back for it.", enqueue=False).run

    # when: the run closes
    closed = runner.run_pipeline(run_id=run.pk)

    # then: it is left queued for the decision (the sweeper hands it over), not waiting for a person forever
    assert closed.status == PipelineRun.Status.QUEUED and closed.resolution["verdict"] == "approve"
    assert (closed.takes, closed.lease_expires_at) == (0, None)

    # when: a worker takes it
    monkeypatch.setattr(type(route), "run", original)
    finished = runner.run_pipeline(run_id=run.pk)

    # then: the decision is carried out
    assert finished.status == PipelineRun.Status.COMPLETED


def test_a_run_worked_outside_any_transaction_writes_twice_and_releases_its_lock_after_its_close(
    committed_run,
):
    # given: a committed, never taken run, worked on a connection in autocommit (as a worker's is)
    run = committed_run()
    in_thread(lambda: runner.run_pipeline(run_id=committed_run().pk))  # the configuration read once

    def work() -> tuple[str, list[str]]:
        router = Router.for_run(PipelineRun())  # set up beforehand, as an evaluation does
        connection.force_debug_cursor = True
        try:
            status = runner.run_pipeline(run_id=run.pk, router=router).status
            return status, [q["sql"] for q in connection.queries]
        finally:
            connection.force_debug_cursor = False

    status, sent = in_thread(work)

    # then: two writes, lock + claim + read, and the close with every checkpoint, committed and then unlocked
    assert status == PipelineRun.Status.COMPLETED
    # (between them only the steps' own reads: the embedding's memo, the knowledge-base search)
    assert [sql.split()[0] for sql in sent[1:-1]] == ["SELECT", "SELECT"], sent
    assert sent[0].startswith("SET LOCAL synchronous_commit = off; SELECT set_config('triage.run_lock'")
    close = sent[-1]
    assert close.startswith('BEGIN; SET LOCAL synchronous_commit = off; INSERT INTO "triage_steprun"')
    assert close.index("COMMIT; SELECT pg_advisory_unlock(") > close.index('UPDATE "triage_pipelinerun"')
    stored = in_thread(lambda: list(StepRun.objects.filter(run_id=run.pk).values_list("step", flat=True)))
    assert stored == list(runner.STEPS)

    # and: the lock is free for the next holder
    def take() -> bool:
        with run_lock(run.pk) as held:
            return held

    assert in_thread(take) is True


def test_a_run_whose_lock_another_worker_holds_is_neither_claimed_nor_changed(committed_run):
    # given: a queued run whose lock another session holds
    run = committed_run()
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with run_lock(run.pk) as held:
            assert held
            holding.set()
            done.wait(30)

    holder = threading.Thread(target=lambda: in_thread(hold))
    holder.start()
    assert holding.wait(30)
    try:
        # when: a worker takes it
        taken = in_thread(lambda: runner.run_pipeline(run_id=run.pk))
    finally:
        done.set()
        holder.join(30)

    # then: it is returned as it was: no claim, no take counted, no step
    stored = in_thread(lambda: PipelineRun.objects.get(pk=run.pk))
    assert taken.status == stored.status == PipelineRun.Status.QUEUED
    assert stored.takes == 0 and stored.started_at is None
    assert in_thread(lambda: StepRun.objects.filter(run_id=run.pk).count()) == 0


# --- Prepared statements ----------------------------------------------------------------------------------


def prepared_here() -> list[str]:
    """The statements this session has prepared (their text as PREPARE gave it)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE name LIKE 'triage_%%'")
        return [row[0] for row in cursor.fetchall()]


def sent_while(fn) -> tuple[object, list[str]]:
    connection.ensure_connection()  # not the session's own set-up (`hnsw_session_set`)
    connection.force_debug_cursor = True
    try:
        before = len(connection.queries)
        return fn(), [q["sql"] for q in connection.queries[before:]]
    finally:
        connection.force_debug_cursor = False


SUM_PERCENT = ("SELECT %s::int + 1, 'x%%' || %s", [41, "y"])


def test_a_statement_used_again_in_a_session_is_prepared_once_then_executed_by_name_with_the_same_answer(db):
    def session() -> tuple[list, list[list[str]], list[str]]:
        answers, sent = [], []
        for _ in range(3):
            answer, queries = sent_while(lambda: rows_unflushed([SUM_PERCENT]))
            answers.append(answer)
            sent.append(queries)
        return answers, sent, prepared_here()

    answers, sent, prepared = in_thread(session)

    # then: the same answer each time ('%%' is a literal percent sign, as in the text sent as it is)
    assert answers == [[[(42, "x%y")]]] * 3
    # the first use goes as it is; the second prepares it (its own statement, outside any transaction) and
    # executes it by name; the third only executes it
    assert "'x%' ||" in sent[0][0] and "EXECUTE" not in sent[0][0]
    assert sent[1][0].startswith("PREPARE triage_") and "$1::int + 1, 'x%' || $2" in sent[1][0]
    assert "EXECUTE triage_" in sent[1][1] and "EXECUTE triage_" in sent[2][0] and len(sent[2]) == 1
    assert prepared == [sent[1][0]]


def test_a_new_session_prepares_its_statements_afresh(db):
    def two_sessions() -> list:
        answers = [rows_unflushed([SUM_PERCENT]) for _ in range(3)]
        connection.close()  # the next query opens a new session, where nothing is prepared
        answers += [rows_unflushed([SUM_PERCENT]) for _ in range(3)]
        return [answers, prepared_here()]

    answers, prepared = in_thread(two_sessions)

    assert answers == [[[(42, "x%y")]]] * 6
    assert len(prepared) == 1


def test_a_statement_the_server_cannot_type_and_one_inside_a_transaction_are_sent_as_they_are(db):
    def session() -> tuple[list, list[str], list[str]]:
        untyped = [rows_unflushed([("SELECT %s + %s", [1, 2])]) for _ in range(3)]
        with transaction.atomic():
            inside = [rows_unflushed([SUM_PERCENT]) for _ in range(3)]
        _, sent = sent_while(lambda: rows_unflushed([("SELECT %s + %s", [1, 2])]))
        return untyped + inside, sent, prepared_here()

    answers, sent, prepared = in_thread(session)

    assert answers == [[[(3,)]]] * 3 + [[[(42, "x%y")]]] * 3
    assert "EXECUTE" not in sent[0]
    assert prepared == []  # `$1 + $2`: no operator for two unknowns; inside the transaction nothing is prepared


def test_with_prepared_statements_off_every_statement_is_sent_as_it_is(db, settings):
    settings.TRIAGE_PREPARED_STATEMENTS = False
    answers = in_thread(lambda: [[rows_unflushed([SUM_PERCENT]) for _ in range(3)], prepared_here()])
    assert answers == [[[[(42, "x%y")]]] * 3, []]


def test_a_worker_working_runs_one_after_another_executes_its_take_close_and_search_by_name(committed_run):
    # given: three committed runs, worked by one worker on one connection (as an RQ worker works its jobs)
    runs = [committed_run() for _ in range(3)]

    def work() -> tuple[list[str], list[str], list[str]]:
        statuses = [runner.run_pipeline(run_id=run.pk).status for run in runs[:2]]
        _, sent = sent_while(lambda: statuses.append(runner.run_pipeline(run_id=runs[2].pk).status))
        return statuses, sent, prepared_here()

    statuses, sent, prepared = in_thread(work)

    # then: all closed as a run on a new connection closes them, every checkpoint stored
    assert statuses == [PipelineRun.Status.COMPLETED] * 3
    for run in runs:
        steps = in_thread(lambda run=run: list(StepRun.objects.filter(run_id=run.pk).values_list("step", flat=True)))
        assert steps == list(runner.STEPS)
    # and: the third run's take, search and close executed statements prepared earlier
    assert any("WITH claimed AS (UPDATE" in p for p in prepared)
    assert any('INSERT INTO "triage_steprun"' in p for p in prepared)
    assert any("<=>" in p for p in prepared)  # the knowledge-base search
    assert sent[0].startswith("SET LOCAL synchronous_commit = off; EXECUTE triage_")
    assert "WITH claimed" not in sent[0] and "INSERT INTO" not in sent[-1]
    assert sent[-1].startswith("BEGIN; SET LOCAL synchronous_commit = off; EXECUTE triage_")


def _fields(instance):
    return {k: v for k, v in instance.__dict__.items() if k != "_state"}


def test_an_unsaved_instance_is_the_one_the_constructor_builds_and_saves_the_same(db):
    # `unsaved` replaces `Model.__init__` for the rows the runner writes in bulk (checkpoints, record-only actions).
    ticket = Ticket.objects.create(source="t", external_id="unsaved", body="b")
    run = PipelineRun.objects.create(ticket=ticket)
    built = durability.unsaved(StepRun, run=run, step="classify", attempt=2, input_digest="d")
    constructed = StepRun(run=run, step="classify", attempt=2, input_digest="d")
    assert _fields(built) == _fields(constructed)
    assert built.run is run and built._state.adding and built._state.db is None
    # A callable default is called for each instance, as the constructor calls it: no list shared between rows.
    assert built.verdicts == [] and built.verdicts is not durability.unsaved(StepRun, run=run).verdicts
    assert _fields(durability.unsaved(StepRun, run_id=run.pk, step="classify")) == _fields(
        StepRun(run_id=run.pk, step="classify")
    )
    action = durability.unsaved(Action, run=run, kind="send_reply", payload={"a": 1}, idempotency_key="k", attempts=1)
    assert _fields(action) == _fields(
        Action(run=run, kind="send_reply", payload={"a": 1}, idempotency_key="k", attempts=1)
    )
    # A name that is no field is refused, as the constructor refuses it (it would otherwise never be written).
    with pytest.raises(TypeError, match="StepRun has no field 'stpe'"):
        durability.unsaved(StepRun, run=run, stpe="classify")
    # Saved by the ORM and written by `insert_statement`, it is the row the constructor's instance makes.
    built.save(force_insert=True)
    assert StepRun.objects.get(pk=built.pk).input_digest == "d"
    durability.statements_unflushed([durability.insert_statement(Action, [action])])
    assert Action.objects.get(idempotency_key="k").payload == {"a": 1}


def test_an_unsaved_instance_of_a_model_with_init_receivers_is_refused():
    def receiver(**kwargs):
        pass

    durability._defaults.cache_clear()
    signals.post_init.connect(receiver, sender=Ticket)
    try:
        with pytest.raises(TypeError, match="post_init receivers"):
            durability.unsaved(Ticket)
    finally:
        signals.post_init.disconnect(receiver, sender=Ticket)
        durability._defaults.cache_clear()


@pytest.mark.parametrize("big", [2**64 - 1, 2**64 + 1], ids=["orjson", "beyond 64 bits: the standard library's json"])
def test_rows_written_by_insert_statement_read_back_as_the_orm_writes_them(db, big):
    # The runner writes its checkpoints through `insert_statement` (one JSON parameter, `json_to_recordset`); the
    # values must come back exactly as an ORM save stores them: decimals, floats, stamps, JSON and text alike,
    # whichever encoder wrote them (orjson, or the standard library for an integer orjson refuses).
    from decimal import Decimal

    run = PipelineRun.objects.create(ticket=Ticket.objects.create(source="t", external_id="insert", body="b"))
    tricky = {
        "text": "quotes \" and ' and \\ back, tab\t, new\nline, é, 中文, 🙂, \u2028",
        "nested": {"list": [1, 2.5, 1e-07, -0.0, None, True, "x"], "empty": {}, 7: "an int key"},
        "big": big,
    }
    values = dict(
        output=tricky,
        verdicts=[{"gate": "g", "passed": False, "reason": "r 'x'"}],
        latency_ms=1.2345678901234567,
        cost=Decimal("0.000123"),
        tokens_in=7,
        model='m "q"',
        error="e\\rr",
        finished_at=timezone.now(),
    )
    by_orm = StepRun.objects.create(run=run, step="draft", attempt=1, status="succeeded", **values)
    written = durability.unsaved(StepRun, run=run, step="draft", attempt=2, status="failed", **values)
    statement = durability.insert_statement(StepRun, [written])
    assert ('"big":' + str(big) in statement[1][0]) == (big < 2**64)  # orjson's compact text, or json's
    durability.statements_unflushed([statement])
    stored, saved = StepRun.objects.get(run=run, attempt=2), StepRun.objects.get(pk=by_orm.pk)
    tricky["nested"]["7"] = tricky["nested"].pop(7)  # a JSON object's keys are text, whoever writes it
    for field in values:
        assert getattr(stored, field) == getattr(saved, field) == values[field], field
    assert stored.started_at == written.started_at  # the `auto_now_add` stamp `insert_statement` set
