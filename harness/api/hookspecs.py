"""The hooks a genbench plugin can implement.

A plugin is a module (or object) with functions decorated by ``genbench.hookimpl``
whose names match the hooks below. It is found through an entry point in the
``genbench`` group of its distribution's metadata::

    [project.entry-points.genbench]
    my_models = "my_package.plugin"

Every hook receives a ``register`` callback and calls it once per thing it provides.
The built-in models, data sets and metrics are plugins written exactly this way.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("genbench")
hookimpl = pluggy.HookimplMarker("genbench")


@hookspec
def register_models(register: Callable[[type], None]) -> None:
    """Register model plugins.

    Call ``register(ModelClass)`` for each :class:`genbench.Model` subclass the plugin
    provides. The class's ``name`` is what suite files refer to; it must be unique
    across all installed plugins (a duplicate is reported and ignored).

    Example::

        @genbench.hookimpl
        def register_models(register):
            register(LinearAE)
    """


@hookspec
def register_datasets(register: Callable[[type], None]) -> None:
    """Register data set plugins.

    Call ``register(DatasetClass)`` for each :class:`genbench.Dataset` subclass. Its
    ``load(split, root, download)`` returns an :class:`genbench.ImageSet` of uint8
    images; the harness handles subsets, validation splits, devices and batching.
    """


@hookspec
def register_loggers(register: Callable[[type], None]) -> None:
    """Register experiment-tracker loggers.

    Call ``register(LoggerClass)`` for each :class:`genbench.Logger` subclass. A suite
    selects loggers by ``name`` under ``loggers:``; each receives the suite's lifecycle
    events (suite start, run start, training losses, evaluations during training, run
    end with the record and figures, suite end). The built-in ``tensorboard`` and
    ``mlflow`` loggers are plugins written this way.

    Example::

        @genbench.hookimpl
        def register_loggers(register):
            register(CSVLogger)
    """


@hookspec
def register_metrics(register: Callable[[object], None]) -> None:
    """Register metrics.

    Call ``register(genbench.Metric(name=..., compute=..., requires=...,
    higher_is_better=..., unit=...))`` for each metric. ``compute(ctx)`` receives an
    :class:`genbench.EvalContext` and returns a float. A metric whose ``requires``
    capabilities a model lacks is not computed for it and shows as a dash.
    """
