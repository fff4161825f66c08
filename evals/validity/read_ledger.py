"""The ledger of test reads: `validate fidelity --final` and a campaign's fidelity check on personas of the outer
split each append one line (when, under which code and config, into which folder, the headline) to an
append-only JSONL file, so that a read of the test part is counted and shown, never silent (issue 36)."""

from __future__ import annotations

import json
import os
from pathlib import Path


#: Where reads of the test part are counted (relative to the working folder): `validate fidelity --final`'s, and a
#: campaign's fidelity check on personas of the outer split. ``$PERSONASIM_TEST_READS`` moves it (the tests do).
TEST_READS = Path("docs") / "results" / "test_reads.jsonl"


def test_reads_path() -> Path:
    """The ledger of test reads: ``$PERSONASIM_TEST_READS``, else `TEST_READS`."""
    return Path(os.environ.get("PERSONASIM_TEST_READS") or TEST_READS)


def part_read(split) -> str:
    """'test' when ``split`` is the outer split (its held-out part is the test part), 'validation' when it is a
    split of a training part (`recsys.time_splits.TimeSplit.inner`: development's)."""
    return "test" if split.depth == 0 else "validation"


def record_test_read(reads: Path, result: dict, out: Path) -> dict:
    """Append one line to ``reads`` (append-only JSONL): when the test part was read, under which code and
    config, into which folder, and its headline. A later read under other code is allowed, counted and shown
    (`counted_reads`)."""
    from datetime import datetime, timezone

    from personas.infra.code import code_version

    row = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), "code": code_version()["sources"],
           "source": result.get("source", "validate fidelity --final"),
           "config_hash": result.get("config_hash"), "split": result.get("split"), "out": str(out),
           "headline": result.get("headline")}
    reads.parent.mkdir(parents=True, exist_ok=True)
    with open(reads, "a", encoding="utf-8") as f:
        f.write(json.dumps(row, default=float) + "\n")
        f.flush()
    return row


def count_campaign_read(record: dict, out: Path) -> dict | None:
    """A campaign's fidelity check (``record``, its fidelity.json): when it read the test part, append the read to
    the ledger (`test_reads_path`) if the ledger's folder exists, i.e. in a checkout of this repository, and return
    the row; None otherwise (a validation read, or a campaign run elsewhere, which makes no docs/ folder)."""
    ledger = test_reads_path()
    if record.get("read") != "test" or not ledger.parent.is_dir():
        return None
    return record_test_read(ledger, record, out)


def counted_reads(reads: Path) -> list[dict]:
    """Every recorded read of the test part, oldest first ([] when none)."""
    if not reads.is_file():
        return []
    return [json.loads(line) for line in reads.read_text(encoding="utf-8").splitlines() if line.strip()]


