"""The results folder of ``rotaux eval``: one ``metrics.jsonl`` row per finished evaluation and a
markdown table of them all, so a rerun skips what is done."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

TABLE_COLUMNS = ("checkpoint", "method", "protocol", "data", "labels", "recipe")


def evaluation_key(identity: dict[str, Any]) -> str:
    """A short hash of everything that decides an evaluation's result (checkpoint and its
    fingerprint, protocol, data, labels and recipe): equal keys mean the same evaluation."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class ResultsFolder:
    """``<out>/metrics.jsonl`` (one JSON row per finished evaluation, appended) and
    ``<out>/results.md`` (the table of every row, rewritten after each)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.metrics_path = self.out / "metrics.jsonl"
        self.table_path = self.out / "results.md"

    def rows(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        lines = self.metrics_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def done(self, key: str) -> dict[str, Any] | None:
        """The row of the evaluation with this key, if it finished before."""
        return next((row for row in self.rows() if row.get("key") == key), None)

    def add(self, row: dict[str, Any]) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with self.metrics_path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        self.table_path.write_text(self.table() + "\n")

    def table(self) -> str:
        """Markdown table of every finished evaluation, accuracies in %."""
        header = [*TABLE_COLUMNS, "top-1", "top-5"]
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(TABLE_COLUMNS) + "---:|---:|",
        ]
        for row in self.rows():
            cells = [str(row.get(column, "")) for column in TABLE_COLUMNS]
            cells += [f"{100 * row['top1']:.2f}", f"{100 * row['top5']:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)
