"""What a suite leaves on disk: run records, the resolved suite, the environment, tables.

Every file is written atomically (a temporary file, then a rename) right after the run
it belongs to, so a failed run or a killed process loses nothing already computed.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import torch

RECORD = "record.json"
_UMASK = os.umask(0)
os.umask(_UMASK)


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_records(out: Path) -> list[dict]:
    """Every run record under ``out/runs``, oldest first."""
    records = []
    for path in sorted((out / "runs").glob(f"*/{RECORD}")):
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue  # a half-written record cannot exist (atomic writes); skip foreign files
    return sorted(records, key=lambda r: r.get("finished", ""))


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("genbench", "torch", "torchvision", "numpy", "pluggy", "torch-fidelity",
                 "scikit-image", "pandas", "rich"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def environment(device: torch.device, plugin_sources) -> dict:
    return {
        "versions": versions(),
        "device": str(device),
        "device_name": device_description(device),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "plugins": [{"plugin": s.plugin, "distribution": s.distribution, "version": s.version}
                    for s in plugin_sources],
    }


def results_frame(records: list[dict]) -> pd.DataFrame:
    """One tidy row per run: identifiers, options, every metric, the budget used.

    Options become ``options.<name>`` columns and a metric that does not apply is
    empty, so ``pandas.read_csv`` gives numeric columns without cleaning.
    """
    rows = []
    for r in records:
        row = {"run_id": r["run_id"], "label": r["label"], "model": r["model"], "seed": r["seed"],
               "status": r["status"]}
        for key, value in (r.get("options") or {}).items():
            row[f"options.{key}"] = value if not isinstance(value, (list, dict)) else json.dumps(value)
        row.update(r.get("metrics") or {})
        for key, value in (r.get("budget_used") or {}).items():
            row[f"train_{key}"] = value
        row.update(stopped_by=r.get("stopped_by"), eval_seconds=r.get("eval_seconds"),
                   dataset=(r.get("dataset") or {}).get("name"), eval_split=r.get("eval_split"),
                   device=r.get("device"), config_hash=r.get("config_hash"), error=r.get("error"))
        rows.append(row)
    frame = pd.DataFrame(rows)
    ids = ["run_id", "label", "model", "seed", "status"]
    options = sorted(c for c in frame.columns if c.startswith("options."))
    rest = [c for c in frame.columns if c not in ids and c not in options]
    return frame[[c for c in ids if c in frame.columns] + options + rest]
