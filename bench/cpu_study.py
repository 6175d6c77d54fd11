"""The shared tail of the CPU study scripts (bench/*_cpu.py): run the variants in worker processes, write the
records as JSON and their table as markdown next to it, print the table."""
from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable


def run_study(run_variant: Callable[[tuple], dict], jobs: list[tuple], processes: int, json_path: str,
              markdown: Callable[[list[dict]], str]) -> list[dict]:
    """run_variant(job) -> record for every job, `processes` at a time; writes json_path and its .md twin."""
    with ProcessPoolExecutor(processes) as pool:
        records = list(pool.map(run_variant, jobs))
    Path(json_path).write_text(json.dumps(records, indent=1))
    md = markdown(records)
    Path(json_path).with_suffix(".md").write_text(md)
    print(md)
    return records
