from django.apps import AppConfig
from django.db.backends.signals import connection_created


class TriageConfig(AppConfig):
    name = "triage"
    verbose_name = "Triage"

    def ready(self) -> None:
        from triage.selectors import hnsw_session_set

        connection_created.connect(hnsw_session_set, dispatch_uid="triage.hnsw_session_set")
