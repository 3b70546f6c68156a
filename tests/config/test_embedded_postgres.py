"""The embedded PostgreSQL starts when a command needs the database, never as a side effect of settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, var_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRIAGE_VAR_DIR": str(var_dir)}
    env.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_commands_without_the_database_start_no_server_and_the_first_connection_starts_it(tmp_path):
    pgdata = tmp_path / "pgdata"

    checked = manage("check", var_dir=tmp_path)

    assert checked.returncode == 0, checked.stderr
    assert not pgdata.exists()

    try:
        status = manage("embedded_postgres", "status", var_dir=tmp_path)
        assert status.returncode == 0, status.stderr
        assert (pgdata / "postmaster.pid").exists()
        assert status.stdout.startswith(f"embedded PostgreSQL at {pgdata}: postgresql://postgres:@/triage?host=")
    finally:
        stopped = manage("embedded_postgres", "stop", var_dir=tmp_path)
    assert stopped.returncode == 0 and stopped.stdout.strip() == "stopped"
    assert not (pgdata / "postmaster.pid").exists()
