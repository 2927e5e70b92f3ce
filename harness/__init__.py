"""genbench: compare generative image models under an equal compute budget.

The names below are the public plugin API; see README.md, "Writing a plugin".
"""

from .data import Dataset, ImageSet
from .hookspecs import hookimpl
from .metrics import EvalContext, EvalOptions, Metric
from .model import Batch, Capability, DataInfo, Model, NoOptions, Step
from .options import option

__version__ = "0.1.0"

__all__ = ["Batch", "Capability", "DataInfo", "Dataset", "EvalContext", "EvalOptions", "ImageSet", "Metric",
           "Model", "NoOptions", "Step", "hookimpl", "option", "__version__"]
