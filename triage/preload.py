"""What every run reads, ready in the process before its first run: the embedding model, the classifier in
force and the thresholds chosen for it. Both workers keep them so: the RQ worker's parent before its first
fork and at every maintenance pass (`triage.worker`: a work-horse inherits them instead of loading them
for each job, and would lose its own when it exits), and the in-process worker in the web process
(`triage.tasks`: the models loaded in the background as the process starts, so the first ticket after a
start does not wait for them, ~2.4 s on a 2-core machine on 2026-11-30, and the choice renewed in its
sweeper thread, not in whichever run finds it expired).
"""

from __future__ import annotations

import logging

from django import db
from django.conf import settings
from django.db import connections

from integrations.embeddings import get_local_embedder
from triage.autonomy import CHOICE_TTL_SECONDS, thresholds_current
from triage.pipeline.router import classifier_cache_keep, classifier_load
from triage.selectors import classifier_latest, gate_policy_current

logger = logging.getLogger(__name__)


def models_preload() -> None:
    """Load what every run needs once per process: the embedding model, then `models_refresh`."""
    get_local_embedder().embed(["warm-up"], batch_size=1)
    models_refresh()


def models_refresh() -> None:
    """Have in this process what every run reads and a work-horse would otherwise load or work out again for
    each job, and lose when it exits: the classifier in force (unpickled) and the thresholds chosen for it
    (`thresholds_current`, with the MAPIE and scikit-learn modules the choice imports).

    Measured with `bench/worker_fork.py` on 2026-11-30: with only the models preloaded, each work-horse chose
    the thresholds again, importing those modules (about 130 of them), and a job took 0.30-0.35 s against
    0.07 s in a worker that does not fork. Called before the first fork and at every maintenance pass (every
    `TRIAGE_SWEEP_INTERVAL` seconds): a new classifier version (a promotion, a roll-back) is loaded here, not
    in every job, and the choice is renewed two passes before it expires. Three small queries when
    nothing moved.
    """
    try:
        latest = classifier_latest()
        if latest is not None:
            classifier_load(latest.pk)
            classifier_cache_keep(latest.pk)  # the version it replaced is not kept for the worker's life
            thresholds_current(
                classifier=latest,
                policy=gate_policy_current(),
                # Two passes ahead, but never more than half its life: a long sweep interval must not turn into
                # choosing again at every pass.
                renew_within=min(2 * max(1.0, float(settings.TRIAGE_SWEEP_INTERVAL)), CHOICE_TTL_SECONDS / 2),
            )
    finally:
        # The RQ worker forks its work-horses from this process: none may inherit its database socket (in the
        # in-process worker's sweeper thread, the thread's own connection: none is held between passes).
        connections.close_all()


def models_refresh_safely() -> None:
    """`models_refresh` for a periodic loop: without it the runs still work (each loads and chooses what it
    needs), slower, not down; a failure is logged and the next pass tries again."""
    try:
        models_refresh()
    except db.Error as exc:
        logger.warning("the classifier and thresholds could not be refreshed: %s", exc)
    except Exception:
        logger.exception("the classifier and thresholds could not be refreshed")
