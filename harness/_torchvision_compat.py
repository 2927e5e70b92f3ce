"""Make ``import torchvision`` work next to a CPU-only torch.

PyPI's torchvision 0.28.0 wheel is a CUDA build. Next to the CPU torch wheel its C
extension fails to load, and ``torchvision/_meta_registrations.py`` then dies with
"operator torchvision::nms does not exist": it registers fake kernels for ``nms`` and
``qnms`` unconditionally (its other registrations are skipped when the extension is
missing). Defining those two schemas and importing again is enough for what genbench
uses (datasets, torch-fidelity). The ops stay unimplemented: calling
``torchvision.ops.nms`` would still fail, which is honest.

Where torchvision imports normally, this does nothing but the import.
"""

from __future__ import annotations

import sys

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # must stay alive: a collected Library object drops its schemas


def ensure_torchvision():
    """Import and return torchvision, defining the missing op schemas if needed."""
    global _library
    try:
        import torchvision
    except RuntimeError as err:
        if "torchvision::" not in str(err) or _library is not None:
            raise
        import torch

        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]  # drop the half-imported package before retrying
        _library = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _SCHEMAS:
            _library.define(schema)
        import torchvision
    return torchvision
