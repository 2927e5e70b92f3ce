"""What a suite leaves on disk: run records, the resolved suite, the environment, tables.

Every file is written atomically (see ``files``) right after the run it belongs to, so
a failed run or a killed process loses nothing already computed. Records are read back
as untrusted data: each is checked against :data:`FIELDS` before anything uses it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
import re
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from . import files, readback, schema
from .files import write_bytes, write_json, write_text  # noqa: F401  (the writers live in files)

RECORD = "record.json"
MAX_RECORD_BYTES = readback.MAX_BYTES


def load_record(path: Path) -> tuple[dict | None, str | None]:
    """(record, None), or (None, a one-line problem naming the file)."""
    try:
        data = readback.read(path, readback.parse_json, MAX_RECORD_BYTES)
    except readback.BadFile as err:
        return None, f"{path}: {err}; skipped"
    problem = schema.check(data)
    if problem:
        return None, f"{path}: not a run record: {problem}; skipped"
    data = schema.upgrade(data)
    if data["run_id"] != path.parent.name:
        return None, f"{path}: its run_id {data['run_id']!r} is not its folder's name; skipped"
    return data, None


def read_records(out: Path, warnings: list[str] | None = None) -> list[dict]:
    """Every valid run record under ``out/runs``, oldest first; a problem per bad one in ``warnings``."""
    records = []
    runs = out / "runs"
    for path in sorted(runs.glob(f"*/{RECORD}")) if runs.is_dir() else []:
        try:
            files.inside(out, "runs", path.parent.name)  # `runs` itself may be a link too
        except ValueError as err:  # e.g. a symbolic link to a folder elsewhere
            rec, problem = None, f"{path}: {err}; skipped"
        else:
            rec, problem = load_record(path)
        if rec is not None:
            records.append(rec)
        elif warnings is not None:
            warnings.append(problem)
    return sorted(records, key=lambda r: str(r.get("finished") or ""))


def utc_now() -> str:
    """The time stamps of records: UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("genbench", "torch", "torchvision", "numpy", "pluggy", "torch-fidelity",
                 "scikit-image", "pandas", "rich"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


# CPU features whose presence changes which kernels torch, MKL and oneDNN pick (x86; an
# ARM CPU lists its own: asimd, sve...); the environment variables that cap them.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
             "amx_tile", "amx_bf16", "amx_int8", "asimd", "sve", "sve2", "bf16")
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR")


@functools.lru_cache(maxsize=8)
def machine(device_name: str = "cpu") -> dict:
    """What a run's numbers may depend on besides the code and the seed: the CPU and the
    instruction sets its kernels use, the BLAS and oneDNN, the GPU and its software."""
    cpu = _cpuinfo()
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    onednn = re.search(r"(?:MKL-DNN|oneDNN) (v[\d.]+)", config)
    out = {"cpu": cpu.get("model name") or platform.processor() or platform.machine(), "arch": platform.machine(),
           "isa": [f for f in ISA_FLAGS if f in cpu.get("flags", "").split() + cpu.get("features", "").split()],
           "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "blas": blas.group(1) if blas else None,
           "onednn": onednn.group(1) if onednn else None, "logical_cores": os.cpu_count(),
           "isa_caps": {k: os.environ[k] for k in ISA_CAPS if k in os.environ}}
    device = torch.device(device_name)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        out["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                      "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
                      "cudnn": torch.backends.cudnn.version(), "driver": _nvidia_driver()}
    return out


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip().lower()] = value.strip()
    return fields


def _nvidia_driver() -> str | None:
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores"


def environment(device: torch.device, plugin_sources, plugin_warnings=()) -> dict:
    return {
        "versions": versions(),
        "device": str(device),
        "device_name": device_description(device),
        "torch_threads": torch.get_num_threads(),
        "machine": machine(str(device)),
        "platform": platform.platform(),
        "plugins": [{"plugin": s.plugin, "distribution": s.distribution, "version": s.version}
                    for s in plugin_sources],
        "plugin_warnings": list(plugin_warnings),  # plugins left out, and why
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
        speed = r.get("throughput") or {}
        for key in ("images_per_second", "flops_per_second", "peak_fraction", "cpu_share", "threads"):
            row[key] = speed.get(key)
        sampling = r.get("sampling") if isinstance(r.get("sampling"), dict) else {}
        row["sample_seconds_per_1000"] = sampling.get("seconds_per_1000")
        row["contended"] = "; ".join(r.get("contended") or [])
        trial, search = r.get("trial") or {}, r.get("search") or {}
        row.update(trial=trial.get("number"), search_trials=search.get("trials"))
        row.update(stopped_by=r.get("stopped_by"), eval_seconds=r.get("eval_seconds"),
                   dataset=(r.get("dataset") or {}).get("name"), eval_split=r.get("eval_split"),
                   device=r.get("device"), config_hash=r.get("config_hash"), error=r.get("error"))
        rows.append(row)
    frame = pd.DataFrame(rows)
    ids = ["run_id", "label", "model", "seed", "status"]
    options = sorted(c for c in frame.columns if c.startswith("options."))
    rest = [c for c in frame.columns if c not in ids and c not in options]
    return frame[[c for c in ids if c in frame.columns] + options + rest]
