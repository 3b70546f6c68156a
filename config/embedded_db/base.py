"""A PostgreSQL backend that starts the embedded server on the first connection, not at import.

Settings name the data directory (`EMBEDDED_DATA_DIR` in the database's settings); the socket
directory, user and port are only known once the server runs, so they are filled in here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db.backends.postgresql import base as postgresql
from psycopg.conninfo import conninfo_to_dict

from config.embedded_postgres import embedded_server_uri


class DatabaseWrapper(postgresql.DatabaseWrapper):
    def get_connection_params(self) -> dict[str, Any]:
        params = super().get_connection_params()
        data_dir = Path(self.settings_dict["EMBEDDED_DATA_DIR"])
        # The server's own admin database when Django connects without one (creating the test database).
        database = params.get("dbname") or "postgres"
        server = conninfo_to_dict(embedded_server_uri(data_dir=data_dir, database=database))
        for key in ("host", "port", "user", "password"):
            if server.get(key):
                params[key] = server[key]
        return params
