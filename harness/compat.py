"""Old import paths keep working, with a warning that names the new one (see CHANGELOG.md).

A plugin written against an earlier release may ``from genbench.extractor import
ExtractorSpec``: that module moved to ``genbench.api.extractor`` when the code was laid
out by stage. Every moved module is one entry of :data:`MOVED`; importing its old name
gives a stand-in module that finds each name where it lives now, and warns once with a
:class:`GenbenchDeprecationWarning` (which ``genbench plugins`` and ``run`` show as a
warning naming the plugin that imported it).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

REMOVAL = "0.3"  # the first release that may drop an old path

# old module (under genbench) -> where its names live now, the module it became first
MOVED: dict[str, tuple[str, ...]] = {
    "data": ("api.dataset", "engine.data"),
    "extractor": ("api.extractor",),
    "fidelity": ("api.fidelity",),
    "hookspecs": ("api.hookspecs",),
    "losses": ("api.losses",),
    "metrics": ("api.metric", "engine.evaluate"),
    "model": ("api.model",),
    "options": ("api.options",),
    "outputs": ("api.outputs",),
    "budget": ("engine.budget",),
    "config": ("engine.config", "engine.runentries", "engine.suitefile"),
    "pluginmanager": ("engine.pluginmanager",),
    "rescore": ("engine.rescore",),
    "runner": ("engine.runner", "engine.execute"),
    "snapshot": ("engine.snapshot",),
    "train": ("engine.train",),
    "yamlfile": ("results.yamlfile",),
    "engine.yamlfile": ("results.yamlfile",),
    "compare": ("render.compare",),
    "figures": ("render.figures",),
    "html": ("render.html",),
    "leaderboard": ("render.leaderboard",),
    "files": ("results.files",),
    "record": ("results.record", "results.schema"),
    "stats": ("results.stats",),
}

# names that went away, and what to use instead
REMOVED: dict[tuple[str, str], str] = {
    ("metrics", "check_counts"): "each metric checks its own counts (Metric.check); "
                                 "genbench.engine.evaluate.check_metrics checks a suite's",
    ("record", "check_record"): "genbench.results.schema.check checks a parsed record",
    ("files", "remove_if_only_lock"): "FolderLock.release(remove_empty_folder=True) does it under the lock",
}


class GenbenchDeprecationWarning(DeprecationWarning):
    """An old spelling of something in genbench's public API."""


class _Moved(types.ModuleType):
    """The stand-in for a moved module: each name is looked up where it lives now."""

    def __init__(self, old: str, homes: tuple[str, ...]):
        super().__init__(f"genbench.{old}", f"Moved to genbench.{homes[0]}.")
        self._old, self._homes = old, homes

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        for home in self._homes:
            module = importlib.import_module(f"genbench.{home}")
            if hasattr(module, name):
                return getattr(module, name)
        instead = REMOVED.get((self._old, name))
        raise AttributeError(f"genbench.{self._old}.{name} was removed" + (f": {instead}" if instead else ""))

    def __dir__(self):
        return sorted({n for home in self._homes for n in dir(importlib.import_module(f"genbench.{home}"))})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        old = fullname.partition(".")[2]
        if fullname.startswith("genbench.") and old in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        old = spec.name.partition(".")[2]
        return _Moved(old, MOVED[old])

    def exec_module(self, module) -> None:
        warnings.warn(f"{module.__name__} moved to genbench.{module._homes[0]}: import from there "
                      f"(the old path goes in genbench {REMOVAL})", GenbenchDeprecationWarning,
                      stacklevel=_importer_level())


def _importer_level() -> int:
    """The ``stacklevel`` of the frame whose import ran: ``warnings`` itself skips importlib's
    bootstrap frames, but not ``importlib.import_module``'s own."""
    frame, level = sys._getframe(2), 2  # the caller of exec_module, which calls this
    while frame is not None and ("importlib" in frame.f_code.co_filename
                                 and "_bootstrap" in frame.f_code.co_filename):
        frame = frame.f_back
    while frame is not None and frame.f_code.co_filename == importlib.__file__:
        frame, level = frame.f_back, level + 1
    return level


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())  # last: a module that exists is always found first
