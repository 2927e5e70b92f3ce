"""What ``genbench plugins`` prints: the installed models, data sets, metrics and loggers,
which distribution provides each, and one plugin's options."""

from __future__ import annotations

import dataclasses
import json

from ..errors import UserError, did_you_mean, install_hint


def show(registry, model: str | None = None, dataset: str | None = None, metric: str | None = None,
         logger: str | None = None, as_json: bool = False) -> int:
    """``genbench plugins``: every installed plugin, or one's options (and a metric's claims)."""
    from rich.table import Table

    from ..messages import console as make_console
    from ..messages import escape

    info = _plugin_info(registry)
    if metric:
        return _show_metric(info, metric, as_json)
    if model or dataset or logger:
        kind, name = (("models", model) if model else ("datasets", dataset) if dataset
                      else ("loggers", logger))
        entry = next((e for e in info[kind] if e["name"] == name), None)
        if entry is None:
            raise UserError(f"--{kind[:-1]} {name}: not installed{did_you_mean(name, [e['name'] for e in info[kind]])}")
        if as_json:
            print(json.dumps(entry, indent=2))
            return 0
        console = make_console()
        console.print(_options_table(f"{kind[:-1]} '{name}': {entry['description']} ({entry['distribution']} "
                                     f"{entry['version']})", entry["options"]))
        if entry.get("likelihood"):
            spec = entry["likelihood"]
            console.print(escape(f"log_likelihood: {'exactly' if spec['exact'] else 'a lower bound on'} log P(x), "
                                 f"{spec['convention']}: {spec['method']}"))
        if entry.get("factors"):
            console.print(escape("factors of variation: " + ", ".join(
                f"{k} ({v} levels)" for k, v in entry["factors"].items())))
        return 0
    if as_json:
        print(json.dumps(info, indent=2))
        return 0
    console = make_console()
    for kind, extra in (("models", "capabilities"), ("datasets", None), ("metrics", "requires"),
                        ("loggers", "needs")):
        table = Table(title=kind.capitalize(), title_justify="left")
        for col in ["name", "description"] + ([extra] if extra else []) + ["provided by"]:
            table.add_column(col)
        for e in info[kind]:
            cells = [e["name"], e["description"]] + ([_needs(e[extra]) or "-"] if extra else [])
            table.add_row(*map(escape, [*cells, f"{e['distribution']} {e['version']}".strip()]))
        console.print(table)
    return 0


def _needs(value) -> str:
    if isinstance(value, dict):  # a logger's packages: say which are missing, and how to get them
        missing = [m for m, ok in value["packages"].items() if not ok]
        shown = ", ".join(value["packages"])
        return shown + (f" (missing: {install_hint(value['extra'])})" if missing else "")
    return ", ".join(value)


def _show_metric(info: dict, name: str, as_json: bool) -> int:
    from rich.table import Table

    from ..messages import console as make_console
    from ..messages import escape

    entry = next((e for e in info["metrics"] if e["name"] == name), None)
    if entry is None:
        raise UserError(f"--metric {name}: not installed{did_you_mean(name, [e['name'] for e in info['metrics']])}")
    if as_json:
        print(json.dumps(entry, indent=2))
        return 0
    table = Table(title=escape(f"metric '{name}' ({entry['distribution']} {entry['version']})"), title_justify="left",
                  show_header=False)
    table.add_column("")
    table.add_column("")
    rows = [("measures", entry["description"]), ("unit", entry["unit"] or "-"),
            ("better", "higher" if entry["higher_is_better"] else "lower"),
            ("needs", ", ".join(entry["requires"]) or "nothing (applies to every model)"),
            ("shared settings", "evaluation: num_samples, feature_extractor (samples and their features)"
             if entry["uses_samples"] else "none"),
            ("checked before training", " and ".join(
                [w for w, on in (("its preconditions", entry["checks"]), ("the feature extractor", entry["uses_samples"]))
                 if on]) + " (by `genbench validate` and `run`)" if entry["checks"] or entry["uses_samples"]
             else "nothing")]
    if entry.get("claims"):
        rows.append(("responds to (check-metrics)", "; ".join(entry["claims"])))
    if entry["options"]:
        example = ", ".join(f"{o['name']}: {json.dumps(o['default'])}" for o in entry["options"])
        rows.append(("in a suite", f"metrics: [{{name: {name}, {example}}}]"))
    else:
        rows.append(("in a suite", f"metrics: [{name}] (no options)"))
    for key, value in rows:
        table.add_row(escape(key), escape(str(value)))
    console = make_console()
    console.print(table)
    if entry["options"]:
        console.print(_options_table(f"options of metric '{name}'", entry["options"]))
    return 0


def _options_table(title: str, options: list[dict]):
    from rich.table import Table

    from ..messages import escape

    table = Table(title=escape(title), title_justify="left")
    for col in ("option", "type", "default", "help"):
        table.add_column(col)
    for o in options:
        help_text = o["help"] + (" [rescore --set NAME=VALUE changes it]" if o.get("evaluation") else "")
        table.add_row(*map(escape, (o["name"], o["type"], "(required)" if o["required"] else repr(o["default"]),
                                    help_text)))
    return table


def _plugin_info(registry) -> dict:
    from ..api.options import describe
    from ..engine.config import importable

    def source(kind, name):
        s = registry.sources[(kind, name)]
        return {"plugin": s.plugin, "distribution": s.distribution, "version": s.version}

    models = [{"name": n, "description": c.description,
               "capabilities": sorted(cap.value for cap in c.capabilities),
               "likelihood": dataclasses.asdict(c.likelihood) if c.likelihood is not None else None,
               "options": [vars(o) for o in describe(c.Options)], **source("model", n)}
              for n, c in sorted(registry.models.items())]
    datasets = [{"name": n, "description": c.description, "image_shape": list(c.image_shape),
                 "classes": list(c.class_names), "options": [vars(o) for o in describe(c.Options)],
                 "factors": {f.name: f.levels for f in c.factors}, **source("dataset", n)} for n, c in sorted(registry.datasets.items())]
    metrics = [{"name": n, "description": m.description, "unit": m.unit,
                "higher_is_better": m.higher_is_better, "requires": sorted(c.value for c in m.requires),
                "uses_samples": m.uses_samples, "checks": m.check is not None,
                "claims": [c.describe(m.higher_is_better) for c in m.claims],
                "options": [vars(o) for o in describe(m.Options)] if m.Options else [],
                **source("metric", n)} for n, m in sorted(registry.metrics.items())]
    loggers = [{"name": n, "description": c.description, "options": [vars(o) for o in describe(c.Options)],
                "needs": {"packages": {m: importable(m) for m in c.requires}, "extra": c.extra},
                **source("logger", n)} for n, c in sorted(registry.loggers.items())]
    return {"models": models, "datasets": datasets, "metrics": metrics, "loggers": loggers,
            "warnings": registry.warnings}

