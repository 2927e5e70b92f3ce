"""genbench: compare generative image models under an equal compute budget.

The names below are the public plugin API; see README.md, "Writing a plugin". They are
imported on first use, so ``import genbench`` (and the ``genbench`` command's start,
before it handles Ctrl-C) does not import torch.
"""

from __future__ import annotations

import importlib

from . import compat

__version__ = "0.1.0"
compat.install()  # genbench.extractor and the other old module paths, with a warning

_API = {name: "api" for name in (
    "Batch", "Capability", "Claim", "DataInfo", "Dataset", "EvalContext", "EvalOptions", "ExtractorSpec", "Factor",
    "ImageSet",
    "Likelihood", "Logger", "Metric", "MetricSetup", "Model", "NoOptions", "RunInfo", "Step", "SuiteInfo", "hookimpl", "option")}
_API["register_extractors"] = "engine.extractors"  # one call before using them from torch-fidelity
_API.update({name: "library" for name in ("score", "score_sets", "run_suite", "load_results", "ScoreResult",
                                            "Tables")})  # genbench from Python

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'genbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
