"""The checks made when a database is opened, before anything writes it: the file is intact
(``PRAGMA quick_check``), every table is there, and every row holds values pairs can read."""

from __future__ import annotations

import json
from pathlib import Path

from core.config import ConfigError, RunConfig
from core.store._sqlite_utils import sqlite_utils
from core.store.errors import DatabaseUnusable, StoreError
from core.store.schema import (
    CONFIG_COLUMNS,
    EPOCH_COLUMNS,
    REQUIRED_TABLES,
    RUN_COLUMNS,
    STATUSES,
)

#: Databases up to this size are checked (PRAGMA quick_check) when opened: ~5 ms per MB.
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024


def _small(path: Path) -> bool:
    """Whether the file is small enough to be checked whole when it is opened."""
    try:
        return path.stat().st_size <= QUICK_CHECK_MAX_BYTES
    except OSError:
        return False


def check_integrity(db: sqlite_utils.Database, path: Path) -> None:
    """Refuse a damaged file before anything reads or writes it (``PRAGMA quick_check``).

    A few milliseconds per MB: done for files up to ``QUICK_CHECK_MAX_BYTES``; a larger file
    is checked page by page as it is read (SQLite then reports "malformed").
    """
    if not _small(path):
        return
    (result,) = db.execute("PRAGMA quick_check(1)").fetchone()
    if result != "ok":
        first = str(result).strip().splitlines()[-1]
        raise DatabaseUnusable(
            f"{path} is corrupted (quick_check: {first}): restore a backup, or recover "
            f"what is readable with: sqlite3 {path} .recover | sqlite3 recovered.db"
        )


def check_tables(db: sqlite_utils.Database, path: Path) -> None:
    """Refuse a pairs database whose tables were dropped (before anything writes it)."""
    present = set(db.table_names())
    for name in REQUIRED_TABLES:
        if name not in present:
            raise StoreError(
                f"{path} has no {name} table (dropped or never made): restore a backup, "
                "or start a new --db and queue the runs again"
            )


def check_rows(db: sqlite_utils.Database, path: Path) -> None:
    """Refuse rows edited by hand into values pairs cannot read (before anything writes).

    Each table is scanned once for a value of the wrong type (text in a number column, a
    NULL where one is required, a status pairs does not know); each configuration is read
    as a ``RunConfig`` (its ``options`` JSON included). The message names the table, the
    row and the column. Files above ``QUICK_CHECK_MAX_BYTES`` are not scanned.
    """
    if not _small(path):
        return
    for table, key, columns in _ROW_RULES:
        present = {c.name for c in db[table].columns}
        checks = [(name, rule) for name, rule in columns.items() if name in present]
        if not checks:
            continue
        cases = " ".join(f"WHEN NOT ({rule.format(c=_quote(name))}) THEN ?" for name, rule in checks)
        conditions = " OR ".join(f"NOT ({rule.format(c=_quote(name))})" for name, rule in checks)
        row = db.execute(
            f"SELECT {key}, CASE {cases} END FROM {table} WHERE {conditions} LIMIT 1",
            [name for name, _ in checks],
        ).fetchone()
        if row is not None:
            ident, column = row
            value = db.execute(f"SELECT {_quote(column)} FROM {table} WHERE {key} = ?", [ident]).fetchone()
            raise StoreError(
                f"{path}: table {table}, row {ident!r}, column {column} holds "
                f"{_shown(value[0] if value else None)}, which pairs cannot read "
                f"({_RULE_WORDS.get(column, 'wrong type')}): fix that row "
                f"(sqlite3 {path}) or restore a backup"
            )
    for config in db.query("SELECT * FROM configs"):
        problem = _config_problem(config)
        if problem:
            column, why = problem
            raise StoreError(
                f"{path}: table configs, row {config.get('id')!r}, column {column} is "
                f"unreadable ({why}): fix that row (sqlite3 {path}) or restore a backup"
            )


_REAL = "typeof({c}) IN ('real', 'integer', 'null')"
_TEXT = "typeof({c}) IN ('text', 'null')"
_INT_NOT_NULL = "typeof({c}) = 'integer'"
_TEXT_NOT_NULL = "typeof({c}) = 'text'"
_TYPE_RULES = {float: _REAL, str: _TEXT, int: "typeof({c}) IN ('integer', 'null')"}


def _rules(columns: dict, **special: str) -> dict[str, str]:
    return {**{name: _TYPE_RULES[kind] for name, kind in columns.items()}, **special}


#: (table, key expression, {column: SQL condition a valid value meets}).
_ROW_RULES: tuple[tuple[str, str, dict[str, str]], ...] = (
    (
        "runs",
        "id",
        _rules(
            RUN_COLUMNS,
            id=_TEXT_NOT_NULL,
            config_id=_TEXT_NOT_NULL,
            rep=_INT_NOT_NULL,
            attempts=_INT_NOT_NULL,
            status="{c} IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")",
        ),
    ),
    (
        "epochs",
        "run_id || ' epoch ' || epoch",
        _rules(
            EPOCH_COLUMNS,
            run_id=_TEXT_NOT_NULL,
            epoch=_INT_NOT_NULL,
        ),
    ),
    (
        "checkpoints",
        "run_id",
        {
            "run_id": _TEXT_NOT_NULL,
            "epoch": _INT_NOT_NULL,
            "state": "typeof({c}) IN ('blob', 'null')",
            "saved_at": _REAL,
        },
    ),
    (
        "configs",
        "id",
        {
            "id": _TEXT_NOT_NULL,
            "created_at": _REAL,
            "options": "{c} IS NULL OR (json_valid({c}) AND json_type({c}) = 'object')",
        },
    ),
)
_RULE_WORDS = {
    "status": f"one of {', '.join(STATUSES)}",
    "attempts": "an integer, never NULL",
    "rep": "an integer",
    "epoch": "an integer",
    "options": "a JSON object",
    "state": "checkpoint bytes",
}
for _name, _kind in {**RUN_COLUMNS, **EPOCH_COLUMNS}.items():
    _RULE_WORDS.setdefault(_name, {float: "a number or NULL", str: "text or NULL", int: "an integer or NULL"}[_kind])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _config_problem(row: dict) -> tuple[str, str] | None:
    """(column, why) when a configs row is not a valid RunConfig; None when it is."""
    try:
        options = json.loads(row["options"]) if row.get("options") else {}
    except (TypeError, ValueError) as exc:
        return "options", f"not JSON: {exc}"
    if not isinstance(options, dict):
        return "options", f"a JSON object is needed, not {_shown(options)}"
    try:
        RunConfig.from_dict(row)
    except ConfigError as exc:
        text = str(exc)
        column = next(
            (
                name
                for name in (*CONFIG_COLUMNS, *options)
                if text.startswith((name, name.replace("_", "-"), f"unknown {name} "))
            ),
            "?",
        )
        if column in options:
            column = f"options.{column}"
        return column, text
    except (TypeError, ValueError) as exc:
        return "?", str(exc)
    return None
