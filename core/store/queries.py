"""Read queries: the status of the queue, the runs and epochs of a setup, and what the tables,
curves, reports and the CLI read (every SQL statement that reads for them is here)."""

from __future__ import annotations

from collections.abc import Sequence

from core.config import RunConfig
from core.store.opening import Connection
from core.store.queue import _chunks
from core.store.schema import CONFIG_COLUMNS, REQUIRED_TABLES, RUN_COLUMNS, STATUSES

#: The metrics copied onto a done run as ``final_<metric>`` (see ``schema.copy_final_metrics``).
FINAL_METRICS = ("train_loss", "val_loss", "val_acc")


def _marks(items: Sequence) -> str:
    return ",".join("?" * len(items))


def _column(name: str, columns: dict, table: str) -> str:
    """``name`` when it is a column of ``table`` (ValueError otherwise: never SQL from a caller)."""
    if name not in columns:
        raise ValueError(f"{name!r} is not a column of {table}")
    return name


class Queries(Connection):
    """The store's read queries (a part of ``Store``)."""

    # -- the queue ---------------------------------------------------------------------------
    def status_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for status, n in self.db.execute("SELECT status, count(*) FROM runs GROUP BY status"):
            counts[status] = n
        return counts

    def running(self) -> list[dict]:
        """Running runs with their configuration and last recorded epoch."""
        return list(
            self.db.query(
                "SELECT r.id, r.rep, r.worker, r.host, r.heartbeat_at, r.started_at, c.structure, "
                "c.arch, c.kernel, c.epochs, (SELECT max(epoch) FROM epochs e "
                "WHERE e.run_id = r.id) AS epoch FROM runs r JOIN configs c ON c.id = r.config_id "
                "WHERE r.status = 'running' ORDER BY r.started_at"
            )
        )

    def failures(self) -> list[dict]:
        return list(
            self.db.query(
                "SELECT r.id, r.rep, r.error, r.attempts, c.structure, c.arch, c.kernel "
                "FROM runs r JOIN configs c ON c.id = r.config_id WHERE r.status = 'failed' "
                "ORDER BY r.finished_at"
            )
        )

    def config_progress(self) -> list[dict]:
        """One row per configuration: its fields and how many runs are in each status."""
        return list(
            self.db.query(
                "SELECT c.*, count(r.id) AS total, "
                "sum(r.status = 'done') AS done, sum(r.status = 'running') AS running, "
                "sum(r.status = 'queued') AS queued, sum(r.status = 'failed') AS failed, "
                "(SELECT max(e.epoch) FROM epochs e JOIN runs rr ON rr.id = e.run_id "
                " WHERE rr.config_id = c.id AND rr.status = 'running') AS current_epoch, "
                "(SELECT group_concat(DISTINCT rh.host) FROM runs rh "
                " WHERE rh.config_id = c.id AND rh.status = 'running') AS hosts "
                "FROM configs c LEFT JOIN runs r ON r.config_id = c.id "
                "GROUP BY c.id ORDER BY c.created_at, c.structure, c.arch, c.kernel"
            )
        )

    def pending_epochs(self, config_ids: list[str] | None = None) -> int:
        """Epochs still to train in the queued and running runs (of ``config_ids``, if given)."""
        where = "r.status IN ('queued', 'running')"
        params: list = []
        if config_ids:
            where += f" AND r.config_id IN ({_marks(config_ids)})"
            params = list(config_ids)
        row = self.db.execute(
            f"SELECT sum(c.epochs - coalesce(k.epoch, 0)) FROM runs r JOIN configs c "
            f"ON c.id = r.config_id LEFT JOIN checkpoints k ON k.run_id = r.id WHERE {where}",
            params,
        ).fetchone()
        return row[0] or 0

    def run_progress(self, config_ids: list[str]) -> list[dict]:
        """The runs of some configurations: id, status, worker, error and last recorded epoch."""
        return list(
            self.db.query(
                f"SELECT r.id, r.status, r.worker, r.error, (SELECT max(e.epoch) FROM epochs e "
                f"WHERE e.run_id = r.id) AS epoch FROM runs r "
                f"WHERE r.config_id IN ({_marks(config_ids)})",
                list(config_ids),
            )
        )

    # -- configurations ----------------------------------------------------------------------
    def config(self, config_id: str) -> RunConfig:
        return RunConfig.from_dict(self.db["configs"].get(config_id))

    def config_rows(self) -> list[dict]:
        """Every row of ``configs``."""
        return list(self.db.query("SELECT * FROM configs"))

    def setup_configs(self, structure: str, arch: str, kernel: int) -> list[dict]:
        """The configurations of one setup, each with its number of runs (``total``)."""
        return list(
            self.db.query(
                "SELECT c.*, (SELECT count(*) FROM runs r WHERE r.config_id = c.id) AS total "
                "FROM configs c WHERE structure = ? AND arch = ? AND kernel = ?",
                [structure, arch, kernel],
            )
        )

    def setup_run_counts(self) -> dict[tuple[str, str, int], int]:
        """How many runs each setup (structure, arch, kernel) has, of every configuration."""
        return {
            (r["structure"], r["arch"], r["kernel"]): r["n"]
            for r in self.db.query(
                "SELECT c.structure, c.arch, c.kernel, count(r.id) AS n FROM configs c "
                "JOIN runs r ON r.config_id = c.id GROUP BY 1, 2, 3"
            )
        }

    def distinct_config_values(self, column: str) -> list:
        """The distinct values of a column of ``configs``, sorted."""
        name = _column(column, CONFIG_COLUMNS, "configs")
        return [r[name] for r in self.db.query(f"SELECT DISTINCT {name} FROM configs ORDER BY {name}")]

    def distinct_option_values(self, name: str) -> list:
        """The distinct values of one ``configs.options`` key (None where a row lacks it)."""
        return [
            r["value"]
            for r in self.db.query("SELECT DISTINCT json_extract(options, ?) AS value FROM configs", [f"$.{name}"])
        ]

    def data_sources(self) -> list[str]:
        """The digit sources (``configs.data``) of the database, sorted."""
        return [r["data"] for r in self.db.query("SELECT DISTINCT data FROM configs ORDER BY data")]

    def runs_per_config(self) -> list[int]:
        """How many runs each configuration has."""
        return [r["n"] for r in self.db.query("SELECT count(*) AS n FROM runs GROUP BY config_id")]

    # -- runs and epochs ---------------------------------------------------------------------
    def epoch_rows(self, config_id: str) -> list[dict]:
        """Every epoch row of a configuration's runs, with the repetition."""
        return list(
            self.db.query(
                "SELECT r.rep, r.status, e.* FROM epochs e JOIN runs r ON r.id = e.run_id "
                "WHERE r.config_id = ? ORDER BY r.rep, e.epoch",
                [config_id],
            )
        )

    def run_rows(self, config_id: str | None = None, status: str | None = None) -> list[dict]:
        where, params = [], []
        if config_id:
            where.append("config_id = ?")
            params.append(config_id)
        if status:
            where.append("status = ?")
            params.append(status)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return list(self.db.query(f"SELECT * FROM runs {clause} ORDER BY config_id, rep", params))

    def final_epoch_rows(self) -> list[dict]:
        """For each done run: its configuration, the final epoch's metrics and its test metrics."""
        return list(
            self.db.query(
                "SELECT c.id AS config_id, c.structure, c.arch, c.kernel, r.rep, "
                "e.train_loss, e.val_loss, e.val_acc, r.test_loss, r.test_acc "
                "FROM runs r JOIN configs c ON c.id = r.config_id "
                "JOIN epochs e ON e.run_id = r.id AND e.epoch = c.epochs "
                "WHERE r.status = 'done'"
            )
        )

    def final_val_acc(self, config_id: str, epoch: int) -> dict[str, float]:
        """Run id -> validation accuracy at ``epoch`` of a configuration's done runs."""
        return {
            row["run_id"]: row["val_acc"]
            for row in self.db.query(
                "SELECT e.run_id, e.val_acc FROM epochs e JOIN runs r ON r.id = e.run_id "
                "WHERE r.config_id = ? AND r.status = 'done' AND e.epoch = ?",
                [config_id, epoch],
            )
        }

    def done_tests(self, config_id: str) -> list[dict]:
        """``test_loss`` and ``test_acc`` of a configuration's done runs."""
        return list(
            self.db.query("SELECT test_loss, test_acc FROM runs WHERE config_id = ? AND status = 'done'", [config_id])
        )

    def setup_aggregates(self, metrics: Sequence[str] = FINAL_METRICS) -> list[dict]:
        """One row per configuration: its fields, ``total``/``done``/``failed`` runs, ``n`` (done
        runs with a final ``val_acc``) and per metric ``<m>_sum`` and ``<m>_sq`` (sum and sum
        of squares over the done runs' final epochs), for mean ± std without reading the runs.

        The final epoch's metrics are copied onto the run when it is done; rows written by
        other tools (without the copy) fall back to a lookup in epochs.
        """
        for m in metrics:
            if m not in FINAL_METRICS:
                raise ValueError(f"{m!r} is not one of {', '.join(FINAL_METRICS)}")
        finals = ", ".join(
            f"CASE WHEN r.status = 'done' THEN coalesce(r.final_{m}, (SELECT e.{m} FROM epochs e "
            f"WHERE e.run_id = r.id AND e.epoch = c.epochs)) END AS {m}"
            for m in metrics
        )
        sums = ", ".join(f"sum(finals.{m}) AS {m}_sum, sum(finals.{m} * finals.{m}) AS {m}_sq" for m in metrics)
        return list(
            self.db.query(f"""
            WITH finals AS (
                SELECT r.config_id, r.status, {finals}
                FROM runs r JOIN configs c ON c.id = r.config_id
            ), agg AS (
                SELECT config_id, count(*) AS total, sum(status = 'done') AS done,
                       sum(status = 'failed') AS failed,
                       count(val_acc) AS n, {sums}
                FROM finals GROUP BY config_id
            )
            SELECT c.*, agg.*
            FROM configs c JOIN agg ON agg.config_id = c.id
        """)
        )

    def code_version_counts(self, config_ids: list[str] | None, unknown: str) -> dict[str, int]:
        """Done runs per ``code_version`` (NULL counted as ``unknown``), of some configurations
        or (None) all."""
        counts: dict[str, int] = {}
        chunks: list = list(_chunks(config_ids, 500)) if config_ids is not None else [None]
        for chunk in chunks:
            clause, params = "status = 'done'", [unknown]
            if chunk is not None:
                clause += f" AND config_id IN ({_marks(chunk)})"
                params.extend(chunk)
            for version, n in self.db.execute(
                f"SELECT coalesce(code_version, ?), count(*) FROM runs WHERE {clause} GROUP BY 1", params
            ):
                counts[version] = counts.get(version, 0) + n
        return counts

    def done_totals(self) -> tuple:
        """(sum of seconds, first start, last finish, count) of the done runs."""
        return tuple(
            self.db.execute(
                "SELECT sum(seconds), min(started_at), max(finished_at), count(*) FROM runs WHERE status = 'done'"
            ).fetchone()
        )

    def done_value_counts(self, column: str) -> list[dict]:
        """``value`` and ``n``: the done runs per value of a ``runs`` column (NULL left out),
        the most common first."""
        name = _column(column, RUN_COLUMNS, "runs")
        return list(
            self.db.query(
                f"SELECT {name} AS value, count(*) AS n FROM runs WHERE status = 'done' "
                f"AND {name} IS NOT NULL GROUP BY {name} ORDER BY n DESC"
            )
        )

    # -- the database as a whole -------------------------------------------------------------
    def row_count(self, table: str) -> int:
        """How many rows a table of the schema holds."""
        if table not in REQUIRED_TABLES:
            raise ValueError(f"{table!r} is not a table of a pairs database")
        return self.db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]

    def meta(self) -> dict[str, str]:
        """The ``meta`` table as a dict (schema_version, created_by, created_at, writes)."""
        return {r["key"]: r["value"] for r in self.db.query("SELECT key, value FROM meta")}
