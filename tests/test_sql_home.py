"""The store owns all SQL: no module of core/ or tui/ outside core/store/ holds a statement,
runs one, or reaches past the Store into its connection (checked on the source, by AST)."""

from __future__ import annotations

import ast
import re
import sqlite3
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "core" / "store"

#: Words that start (or are) an SQL statement, as pairs writes them (upper case).
SQL = re.compile(
    r"\b(SELECT\s|INSERT\s+INTO\b|UPDATE\s+\w+\s+SET\b|DELETE\s+FROM\b|PRAGMA\s|"
    r"CREATE\s+(TABLE|INDEX|UNIQUE)\b|ALTER\s+TABLE\b|DROP\s+(TABLE|INDEX)\b|BEGIN\s+IMMEDIATE\b)"
)
#: Calls that run SQL on a connection (sqlite3, sqlite-utils).
RUNS_SQL = {"execute", "executemany", "executescript"}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes of a module, its classes and functions (prose, not SQL)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _is_store_db(node: ast.AST) -> bool:
    """``<something>.db``: the store's sqlite-utils connection (``store.db``)."""
    return isinstance(node, ast.Attribute) and node.attr == "db"


def sql_in(source: str) -> list[tuple[int, str]]:
    """(line, what) for every place ``source`` holds or runs SQL."""
    tree = ast.parse(source)
    prose = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            match = SQL.search(node.value)
            if match:
                found.append((node.lineno, f"SQL text {match.group(0).strip()!r}"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if func.attr in RUNS_SQL:
                found.append((node.lineno, f".{func.attr}(...)"))
            elif func.attr == "query" and _is_store_db(func.value):
                found.append((node.lineno, ".db.query(...)"))
            elif func.attr == "connect" and isinstance(func.value, ast.Name) and func.value.id == "sqlite3":
                found.append((node.lineno, "sqlite3.connect(...)"))
        elif isinstance(node, ast.Subscript) and _is_store_db(node.value):
            found.append((node.lineno, ".db[table]"))
    return found


def test_the_check_finds_each_kind_of_sql():
    source = '''
def f(store, sqlite3, app):
    """A docstring may name SELECT count(*) FROM runs and PRAGMA data_version."""
    store.db.query("SELECT * FROM configs")
    store.db.execute(f"UPDATE runs SET status = 'queued' WHERE id = {1}")
    store.db["runs"].count
    sqlite3.connect("runs.db")
    text = "INSERT INTO meta (key) VALUES ('x')"
    app.query("#exp-table")  # a Textual query: not SQL
    return "select a setup (pairs queue)"  # lower-case prose: not SQL
'''
    assert sorted(sql_in(source)) == [
        (4, ".db.query(...)"),
        (4, "SQL text 'SELECT'"),
        (5, ".execute(...)"),
        (5, "SQL text 'UPDATE runs SET'"),
        (6, ".db[table]"),
        (7, "sqlite3.connect(...)"),
        (8, "SQL text 'INSERT INTO'"),
    ]


def test_no_module_outside_the_store_holds_sql():
    files = [
        path
        for folder in ("core", "tui")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if STORE not in path.parents
    ]
    assert len(files) > 20  # the walk found the modules
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in files
        for line, what in sql_in(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "SQL outside core/store/ (add a Store method):\n" + "\n".join(offenders)


def test_the_store_package_is_where_the_sql_is():
    found = [what for path in sorted(STORE.glob("*.py")) for _, what in sql_in(path.read_text(encoding="utf-8"))]
    assert any("SELECT" in what for what in found) and any("UPDATE" in what for what in found)


def test_a_column_name_from_a_caller_is_never_sql(tmp_path):
    from core.store import Store

    with Store(tmp_path / "runs.db") as store:
        assert store.distinct_config_values("arch") == []
        assert store.row_count("epochs") == 0
        for call in (
            lambda: store.distinct_config_values("arch FROM configs; DROP TABLE runs --"),
            lambda: store.done_value_counts("1; DELETE FROM runs"),
            lambda: store.row_count("sqlite_master"),
            lambda: store.setup_aggregates(("test_acc) --",)),
        ):
            with pytest.raises(ValueError, match="not"):
                call()
        assert store.row_count("runs") == 0 and "runs" in store.db.table_names()


def test_one_retry_loop_waits_out_a_lock_and_gives_up_after_its_attempts():
    from core.store.busy import retry_busy

    tries = []

    def locked_twice():
        tries.append(1)
        if len(tries) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    assert retry_busy(locked_twice, attempts=5) == "done" and len(tries) == 3
    tries.clear()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        retry_busy(locked_twice, attempts=2)
    assert len(tries) == 2
    tries.clear()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        retry_busy(locked_twice, attempts=5, may_retry=lambda: False)  # inside a transaction
    assert len(tries) == 1

    def broken():
        tries.append(1)
        raise sqlite3.OperationalError("no such table: runs")

    tries.clear()
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        retry_busy(broken, attempts=5)
    assert len(tries) == 1
