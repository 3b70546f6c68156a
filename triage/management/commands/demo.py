import json
import secrets
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from triage.contracts import TicketIn
from triage.datasets import dataset_load
from triage.evaluation import autonomy_figures, ticket_kind
from triage.management.commands._progress import Bars
from triage.management.commands.evaluate import render_report
from triage.metrics import ReferenceLabels, chain_figures
from triage.models import PipelineRun, TargetChange, Ticket
from triage.permissions import agents_group_ensure
from triage.pipeline.router import Router
from triage.selectors import gate_policy_current
from triage.services import (
    categories_import,
    classifier_train,
    examples_import,
    gate_policy_save,
    knowledge_base_import,
    ticket_ingest,
)
from triage.tasks import inprocess_drain, runs_resume

DEMO_DIR = Path(__file__).resolve().parents[2] / "demo"
#: The demo company's target: the most its 628 examples (84% right out of fold) can guarantee with 90%
#: confidence while automating anything (1% would automate nothing: see admin › Gate policy).
DEMO_TARGET = 0.05
PENDING = [PipelineRun.Status.QUEUED, PipelineRun.Status.RUNNING]


class Command(BaseCommand):
    help = "The demo: migrate, load the demo knowledge base and tickets, triage them, print the report, serve."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-serve", action="store_true", help="Stop after the report.")
        parser.add_argument("--addrport", default="127.0.0.1:8000")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument("--json", action="store_true", help="Print the report as one JSON line.")

    def handle(self, *args: object, **options: object) -> None:
        call_command("migrate", verbosity=0, interactive=False)
        login = self._staff_accounts()
        data = dataset_load(DEMO_DIR)
        bars = Bars(enabled=not options["no_progress"])
        categories_import(rows=list(data.categories.items()))
        rows = [(e.text, e.label) for e in data.examples]
        examples_import(rows=rows, progress=bars("learning from examples", len(rows)))
        trained = classifier_train()
        self.stdout.write(f"Classifier trained on {trained.example_count} examples.")
        if not TargetChange.objects.exists():  # the first start; an admin's later choice is kept
            policy = gate_policy_current()
            policy.target_mishandled_rate = DEMO_TARGET
            gate_policy_save(policy=policy, actor=None)
            self.stdout.write(
                f"Gate policy: at most {DEMO_TARGET:.0%} mishandled among auto-handled tickets, 90% confidence. "
                "The demo's ~39 examples a category cannot show 1% (admin › Gate policy shows the curve)."
            )
        kb = sorted((DEMO_DIR / "kb").glob("*.md"))
        knowledge_base_import(directory=DEMO_DIR / "kb", progress=bars("importing knowledge base", len(kb)))
        resumed = runs_resume()
        if resumed:
            self.stdout.write(f"Resumed {resumed} unfinished run(s) from an earlier start.")
        new = 0
        money_tickets: set[int] = set()
        kind_of_ticket: dict[int, str] = {}  # what each ticket truly is (automatable, money, out of scope)
        for row in data.tickets:
            result = ticket_ingest(
                ticket_in=TicketIn(
                    source="demo",
                    external_id=f"demo-{row.line}",
                    subject="",
                    body=row.text,
                    requester=f"customer{row.line}@example.com",
                ),
                reference_label=row.label,
            )
            new += result.created
            kind_of_ticket[result.ticket.pk] = ticket_kind(dataset=data, label=row.label, money=row.money)
            if row.money:
                money_tickets.add(result.ticket.pk)
        self._wait_for_runs(bars, len(data.tickets))
        bars.close()
        runs = PipelineRun.objects.filter(ticket__source="demo")
        policy = gate_policy_current()
        figures = chain_figures(
            runs=runs,
            truth=ReferenceLabels(
                money_labels=frozenset(data.money_labels),
                money_tickets=frozenset(money_tickets) if data.has_money_column else None,
            ),
            human_cost=policy.human_cost_per_ticket or settings.TRIAGE_HUMAN_COST_PER_TICKET,
        )
        # The calibrated-autonomy figures too (target beside the mishandled rate among auto-handled tickets,
        # the share of automatable tickets automated), as `evaluate` reports them.
        known = runs.filter(ticket_id__in=kind_of_ticket)
        kinds = {pk: kind_of_ticket[ticket] for pk, ticket in known.values_list("pk", "ticket_id")}
        autonomy = autonomy_figures(runs=known, kinds=kinds, thresholds=Router.for_run(PipelineRun()).thresholds)
        report = {"dataset": "demo", **figures.as_dict(), **autonomy}
        self.stdout.write("")
        self.stdout.write(json.dumps(report, sort_keys=True) if options["json"] else render_report(report))
        waiting = Ticket.objects.filter(status=Ticket.Status.AWAITING_APPROVAL).count()
        self.stdout.write(f"\n{new} new tickets triaged; {waiting} wait in the approval inbox.")
        self.stdout.write(f"Staff login: {login}")
        if not options["no_serve"]:
            self.stdout.write(f"Serving http://{options['addrport']}/ (Ctrl-C to stop)")
            self.stdout.write(f"  inbox   http://{options['addrport']}/  (sign in at /accounts/login/)")
            self.stdout.write(
                f"  reports http://{options['addrport']}/reports/   admin http://{options['addrport']}/admin/"
            )
            call_command("runserver", options["addrport"], use_reloader=False)

    def _wait_for_runs(self, bars: Bars, total: int) -> None:
        tick = bars("triaging tickets", total)
        done_before = 0
        while True:
            pending = PipelineRun.objects.filter(ticket__source="demo", status__in=PENDING).count()
            done = total - pending
            if done > done_before:
                tick(done - done_before)
                done_before = done
            if pending == 0:
                break
            time.sleep(0.25)
        inprocess_drain(timeout=30)

    def _staff_accounts(self) -> str:
        """An admin (may approve money) and an agent (may not), with passwords kept in var/."""
        users = get_user_model()
        secret_file = settings.VAR_DIR / "demo-login.txt"
        if secret_file.exists():
            password = secret_file.read_text().strip()
        else:
            password = secrets.token_urlsafe(9)
            secret_file.parent.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(password)
        admin, created = users.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        if created or not admin.check_password(password):
            admin.set_password(password)
            admin.save()
        agents = agents_group_ensure()
        agent, created = users.objects.get_or_create(username="agent", defaults={"is_staff": True})
        if created or not agent.check_password(password):
            agent.set_password(password)
            agent.save()
        agent.groups.add(agents)
        return f"admin / {password} (may approve money); agent / {password} (may not)"
