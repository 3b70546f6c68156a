"""The embedded PostgreSQL starts when a command needs the database, never as a side effect of settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from config.embedded_postgres import SETTINGS_MARK, server_settings, settings_write

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
        # The server's own settings were in place at its first start, not only written for the next one.
        assert shared_buffers_mb(var_dir=tmp_path) == int(server_settings()["shared_buffers"].removesuffix("MB"))
    finally:
        stopped = manage("embedded_postgres", "stop", var_dir=tmp_path)
    assert stopped.returncode == 0 and stopped.stdout.strip() == "stopped"
    assert not (pgdata / "postmaster.pid").exists()


def test_the_server_settings_are_written_once_and_an_operators_edit_is_kept(tmp_path):
    conf = tmp_path / "postgresql.conf"
    conf.write_text("shared_buffers = 128MB\n", encoding="utf-8")

    assert settings_write(data_dir=tmp_path) is True
    conf.write_text(conf.read_text(encoding="utf-8").replace("MB'", "MB' # raised by the operator"), encoding="utf-8")
    assert settings_write(data_dir=tmp_path) is False

    text = conf.read_text(encoding="utf-8")
    assert text.count(SETTINGS_MARK) == 1
    assert text.rstrip().endswith("# raised by the operator")
    # No data directory yet (initdb not run): nothing is written.
    assert settings_write(data_dir=tmp_path / "missing") is False


def shared_buffers_mb(*, var_dir: Path) -> int:
    query = "SELECT setting::bigint * 8192 / 1048576 FROM pg_settings WHERE name = 'shared_buffers'"
    code = f"from django.db import connection; c = connection.cursor(); c.execute({query!r}); print(c.fetchone()[0])"
    shell = manage("shell", "-c", code, var_dir=var_dir)
    assert shell.returncode == 0, shell.stderr
    return int(shell.stdout.split()[-1])  # after the shell's own "objects imported" line
