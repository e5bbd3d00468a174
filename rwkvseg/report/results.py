"""The committed records that ship inside the package (rwkvseg/results/): what the book renders.

    results_path("wkv_benchmark", "wkv_benchmark.json")     # a file of a committed record
    committed_runs("train_isic2018")                          # the full-mode training records

They are found the same way in a clone and in an installed wheel (a Colab runtime has no checkout).
"""
from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "results"


def results_path(*parts: str) -> Path:
    """A path under the committed records (rwkvseg/results/)."""
    return RESULTS.joinpath(*parts)


def read_json(*parts: str) -> dict:
    """A committed JSON record; a FileNotFoundError naming it when it is absent."""
    path = results_path(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"no committed record {'/'.join(parts)} in this installation of rwkvseg")
    return json.loads(path.read_text())


def committed_runs(folder: str) -> list[tuple[str, dict]]:
    """The committed full-mode training records of a chapter, as (name, record) pairs sorted by name:
    every rwkvseg/results/<folder>/<name>/results.json (what rwkvseg.report.record writes).
    Records without a full-mode provenance are left out."""
    root = results_path(folder)
    out = []
    for path in sorted(root.glob("*/results.json")):
        record = json.loads(path.read_text())
        if isinstance(record, dict) and record.get("provenance", {}).get("mode") == "full":
            out.append((path.parent.name, record))
    return out


def latest_run_per_model(runs: list[tuple[str, dict]]) -> dict[str, tuple[str, dict]]:
    """model name -> its most recent record (by provenance date) among `runs`."""
    latest: dict[str, tuple[str, dict]] = {}
    for name, record in runs:
        model = record["model"]
        if model not in latest or record["provenance"]["date"] > latest[model][1]["provenance"]["date"]:
            latest[model] = (name, record)
    return latest
