"""A throwaway local PostgreSQL cluster for the tests, and a fresh database per test.

One cluster per test run (initdb + pg_ctl in a temp dir, fsync off, trust auth on 127.0.0.1; as the
postgres user via runuser when the tests run as root, since the server refuses to run as root). Every
test gets its own database, copied from a template that has the migrations applied once
(`CREATE DATABASE x TEMPLATE t` costs a few ms; migrating each database would cost far more), and the
database is dropped after the test. `blank=True` gives a database with no tables at all, for the
migration tests.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile

INSTALL_HINT = "scripts/setup.sh --test installs the test dependencies"


def pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_version_key)
    return found[-1] if found else shutil.which(name)


def _version_key(path: str) -> tuple[int, ...]:
    version = path.split("/")[-3]
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def missing_reason() -> str | None:
    """Why a cluster cannot be started here, or None if it can."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return f"psycopg is not installed ({INSTALL_HINT})"
    if not (pg_bin("initdb") and pg_bin("pg_ctl")):
        return f"PostgreSQL server binaries (initdb, pg_ctl) are not installed ({INSTALL_HINT})"
    return None


class PostgresCluster:
    TEMPLATE = "studio_migrated"

    def __init__(self) -> None:
        self._as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self._tmp = tempfile.mkdtemp(prefix="studio-pg-")
        os.chmod(self._tmp, 0o777)
        self._data = os.path.join(self._tmp, "data")
        self._names = itertools.count()
        self._template_ready = False
        self.port = 0

    def start(self) -> None:
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._run([*self._as_user, initdb, "-D", self._data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--no-sync"])
        self._run([*self._as_user, pg_ctl, "-D", self._data, "-w", "-l", os.path.join(self._tmp, "log"), "-o",
                   f"-p {self.port} -k {self._tmp} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off", "start"])

    def stop(self) -> None:
        pg_ctl = pg_bin("pg_ctl")
        if pg_ctl:
            subprocess.run([*self._as_user, pg_ctl, "-D", self._data, "-m", "immediate", "stop"],
                           capture_output=True)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, *, blank: bool = False) -> str:
        """A new database (its name): at the migrations' head, or with no tables at all when `blank`."""
        if not blank:
            self._ensure_template()
        name = f"test_{os.getpid()}_{next(self._names)}"
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE {"template0" if blank else self.TEMPLATE}')
        return name

    def drop_database(self, name: str) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # FORCE: a leaked connection is ended

    def _ensure_template(self) -> None:
        if self._template_ready:
            return
        from storage.db import make_engine, upgrade

        self._admin(f"CREATE DATABASE {self.TEMPLATE} TEMPLATE template0")
        engine = make_engine(self.url(self.TEMPLATE))
        try:
            upgrade(engine)
        finally:
            engine.dispose()  # CREATE DATABASE ... TEMPLATE needs the template to have no connections
        self._template_ready = True

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(sql)

    def _run(self, cmd: list[str]) -> None:
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            log = ""
            try:
                with open(os.path.join(self._tmp, "log")) as f:
                    log = f.read()[-2000:]
            except OSError:
                pass
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}{log}")


BACKENDS = ("sqlite", "postgresql")


def parametrize_backends(metafunc) -> None:  # type: ignore[no-untyped-def]
    """A `pytest_generate_tests` hook: every test that uses the database (the `db_backend` fixture, through
    `settings`, `database_url` or a folder's `engine`) runs once per backend, ids `[sqlite]` and
    `[postgresql]`; a test marked `sqlite_only("why")` runs on SQLite alone. Put it in a folder's conftest.py
    or a test module (`pytest_generate_tests = parametrize_backends`)."""
    if "db_backend" not in metafunc.fixturenames:
        return
    only = metafunc.definition.get_closest_marker("sqlite_only")
    if only is not None:
        if not (only.args or only.kwargs.get("reason")):
            raise ValueError(f"{metafunc.definition.nodeid}: sqlite_only needs a reason")
        return
    metafunc.parametrize("db_backend", BACKENDS, indirect=True)
