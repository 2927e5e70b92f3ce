"""The public plugin API: everything a plugin may import from genbench, in one place.

Built-in plugins import nothing else (a test checks this), so they register exactly
the way a third party's package does.
"""

from .dataset import (CACHE_DIR, IMAGE_SUFFIXES, DataError, DataNotFound, Dataset, ImageSet, cached_arrays,
                      download_archive, find_files, image_files, read_idx, search_roots, to_float,
                      torchvision_download)
from .extractor import DomainNet, ExtractorSpec
from .factors import Factor
from .hookspecs import hookimpl
from .likelihood import CONVENTIONS, Likelihood
from .logger import Logger, RunInfo, SuiteInfo
from .metric import DEGRADATIONS, Claim, EvalContext, EvalOptions, Metric, MetricSetup
from .model import CAPABILITIES, Batch, Capability, Contract, DataInfo, Model, NoOptions, Step, halvings
from .options import option

__all__ = [
    "Batch", "CACHE_DIR", "CAPABILITIES", "Capability", "Claim", "Contract", "DEGRADATIONS", "DataError", "DataInfo",
    "DataNotFound", "Dataset", "DomainNet", "EvalContext", "EvalOptions", "ExtractorSpec", "Factor",
    "ImageSet", "Likelihood", "CONVENTIONS", "Logger", "Metric", "MetricSetup", "Model", "NoOptions", "RunInfo", "Step", "halvings",
    "SuiteInfo", "find_files", "hookimpl", "option", "read_idx", "search_roots", "to_float",
    "torchvision_download", "cached_arrays", "download_archive", "image_files", "IMAGE_SUFFIXES"]
