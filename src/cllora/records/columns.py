"""The column table: every rounds.csv and clients.csv column declared once, with its human label,
its kind, its figure axis label and what the report does with it. The files' headers, the report's
per-run statistics, table headings and axis labels all read it.

A name with "{c}" is a per-length-class family (test_loss_c0 .. test_loss_c{K-1}); consecutive
family columns expand class by class (dp_clipped_share_c0, dp_clip_factor_c0, dp_clipped_share_c1,
...). The cores that measure a group of columns name their keys themselves (cllora.aggregate.drift
DRIFT_COLUMNS, cllora.aggregate.error ERROR_COLUMNS, cllora.privacy DP_COLUMNS and clip_columns);
tests/test_columns.py checks that they and this table agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

# what a column measures: the report formats it by kind, tests drop "timing" (wall clock) columns
KINDS = ("key", "setting", "loss", "fairness", "drift", "aggregation", "count", "privacy", "secagg",
         "bytes", "timing", "status")
# what the report does with a round column: nothing; "final": keeps its last value per run
# (final_<name>) and the mean over seeds per condition; "table": that, and a column of the
# summary tables wherever a condition has it
REPORT_USES = ("", "final", "table")


@dataclass(frozen=True)
class Column:
    """One column: `label` heads report tables, `axis` (default: the label) labels figure axes;
    `derive(row) -> value` (optional) computes it from the other values of its row as the row is
    made (read them with row.get: a round that was not evaluated lacks the evaluation columns)."""

    name: str
    label: str
    kind: str
    axis: str = ""
    report: str = ""
    derive: Callable[[dict], Any] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.report not in REPORT_USES:
            raise ValueError(f"column {self.name!r}: report must be one of {REPORT_USES}, got {self.report!r}")

    @property
    def per_class(self) -> bool:
        return "{c}" in self.name


def _table(*columns: Column) -> dict[str, Column]:
    return {c.name: c for c in columns}


ROUND_TABLE: dict[str, Column] = _table(
    Column("round", "Round", "key"),
    Column("global_test_loss", "Global test loss", "loss", axis="global test loss (nats/token)"),
    Column("global_test_ppl", "Global test perplexity", "loss"),
    Column("test_loss_c{c}", "Test loss of length class {c}", "loss", axis="test loss of the class (nats/token)"),
    Column("fairness_var", "Fairness var", "fairness", axis="variance of client test loss", report="final"),
    Column("fairness_std", "Fairness std", "fairness"),
    Column("fairness_min", "Lowest client loss", "fairness"),
    Column("fairness_max", "Highest client loss", "fairness"),
    Column("fairness_worst10", "Worst-10 % client loss", "fairness"),
    Column("fairness_mean", "Mean client loss", "fairness"),
    Column("fairness_var_corrected", "Fairness var, noise-corrected", "fairness", report="table"),
    Column("fairness_se_mean", "Mean standard error of a client's loss", "fairness", report="final"),
    Column("fairness_jain", "Jain (ppl)", "fairness", report="table"),
    Column("fairness_gini", "Gini (ppl)", "fairness", report="table"),
    Column("local_models_test_loss_mean", "Local models' loss", "loss"),
    Column("local_models_var", "Local spread (var)", "fairness"),
    Column("local_models_var_corrected", "Local spread, noise-corrected", "fairness"),
    Column("local_models_global_test_loss_mean", "Local models on the global test set", "loss"),
    Column("num_participants", "Participants", "count"),
    Column("num_failed", "Failed clients", "count"),
    Column("train_loss_mean", "Training loss", "loss"),
    Column("drift_mean", "Drift from start", "drift", axis="client drift from its starting adapter"),
    Column("drift_max", "Largest drift from start", "drift"),
    Column("drift_pairwise", "Drift between clients", "drift"),
    Column("agg_error", "Aggregation error", "aggregation", axis="aggregation error ‖E‖ / ‖this round's mean update‖"),
    Column("agg_error_max_layer", "Largest aggregation error of a layer", "aggregation"),
    # client-level DP (cllora.engine.private_round): empty without DP
    Column("dp_epsilon", "ε so far", "privacy"),
    Column("dp_noise_std", "Noise std on the mean", "privacy"),
    Column("dp_clipped_share", "Share clipped", "privacy"),
    Column("dp_clip_factor_mean", "Mean clip factor", "privacy"),
    Column("dp_update_norm_median", "Median update norm", "privacy"),
    # secure aggregation (cllora.engine.secure_round): empty without secagg
    Column("secagg_contributors", "Clients in the secure sum", "secagg"),
    Column("secagg_bound", "Quantisation bound on the secure mean", "secagg"),
    Column("bytes_up", "Bytes up", "bytes"),
    Column("bytes_down", "Bytes down", "bytes"),
    Column("bytes_cumulative", "Bytes so far", "bytes"),
    Column("train_seconds", "Training seconds", "timing"),
    Column("eval_seconds", "Evaluation seconds", "timing"),
    Column("overhead_seconds", "Overhead seconds", "timing"),
    Column("round_seconds", "Round seconds", "timing"),
    Column("dp_clipped_share_c{c}", "Share clipped, length class {c}", "privacy"),
    Column("dp_clip_factor_c{c}", "Mean clip factor, length class {c}", "privacy"),
)

CLIENT_TABLE: dict[str, Column] = _table(
    Column("round", "Round", "key"),
    Column("client_id", "Client", "key"),
    Column("rank", "LoRA rank", "setting"),
    Column("participated", "Participated", "status"),
    Column("failed", "Failed", "status"),
    Column("num_train_examples", "Training examples", "count"),
    Column("train_loss", "Training loss", "loss"),
    Column("train_seconds", "Training seconds", "timing"),
    Column("local_model_test_loss", "Local model on its own split", "loss"),
    Column("local_model_test_se", "Standard error of the local model's loss", "loss"),
    Column("local_model_global_test_loss", "Local model on the global test set", "loss"),
    Column("global_model_local_test_loss", "Global model on the client's split", "loss"),
    Column("global_model_local_test_se", "Standard error of the global model's loss", "loss"),
    Column("local_test_texts", "Texts in the client's test split", "count"),
    Column("error", "Error", "status"),
)


def register_column(column: Column, clients: bool = False) -> None:
    """Add a column to rounds.csv (or clients.csv) after the table's own; refuses a taken name."""
    table = CLIENT_TABLE if clients else ROUND_TABLE
    if column.name in table:
        raise ValueError(f"a column named {column.name!r} is already declared")
    table[column.name] = column


def _expand(columns: list[Column], num_classes: int) -> tuple[str, ...]:
    """Column names in table order, each run of per-class families expanded class by class."""
    out: list[str] = []
    family: list[Column] = []
    for col in [*columns, None]:
        if col is not None and col.per_class:
            family.append(col)
            continue
        out += [f.name.format(c=c) for c in range(num_classes) for f in family]
        family = []
        if col is not None:
            out.append(col.name)
    return tuple(out)


def round_columns(num_classes: int) -> tuple[str, ...]:
    """rounds.csv's columns for a run of `num_classes` length classes."""
    return _expand(list(ROUND_TABLE.values()), num_classes)


def client_columns() -> tuple[str, ...]:
    """clients.csv's columns."""
    return _expand(list(CLIENT_TABLE.values()), 0)


def class_columns(num_classes: int) -> tuple[str, ...]:
    """The global model's test loss per length class: test_loss_c0 .. test_loss_c{K-1}."""
    return _expand([ROUND_TABLE["test_loss_c{c}"]], num_classes)


def reported(use: str) -> list[Column]:
    """The round columns the report uses so: "final" (every one it keeps a final value of, the
    table's as well) or "table" (those that are also a column of its summary tables)."""
    uses = ("final", "table") if use == "final" else (use,)
    return [c for c in ROUND_TABLE.values() if c.report in uses]


def derived(table: dict[str, Column]) -> list[Column]:
    """The columns of a table that are computed from their row."""
    return [c for c in table.values() if c.derive is not None]


def axis_label(name: str) -> str:
    """A round column's figure axis label."""
    column = ROUND_TABLE[name]
    return column.axis or column.label


# the built-in columns (the per-class families aside), for readers that need no registered ones
ROUND_COLUMNS = tuple(c.name for c in ROUND_TABLE.values() if not c.per_class)
CLIENT_COLUMNS = client_columns()
TIMING_COLUMNS = tuple(c.name for c in ROUND_TABLE.values() if c.kind == "timing")
