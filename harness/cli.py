"""The ``genbench`` command line."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path

from . import __version__
from .errors import UserError

# Heavy modules (torch, rich, pandas) are imported inside the commands, after main()
# has taken over Ctrl-C, so an interrupt at any moment is one line and exit 130.

FORMATS = ("rich", "md", "csv", "json", "html")  # of `genbench report`
INTERRUPTED = "genbench: interrupted; finished runs are saved (continue with --resume)\n"


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        sys.stderr.write(INTERRUPTED)
        return 130


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold Ctrl-C back while torch initialises its C++ parts, then deliver it.

    A KeyboardInterrupt raised inside that initialisation aborts the process
    (pybind11 terminates); blocked, the signal waits and arrives at a safe point.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    with _interrupts_deferred():
        import torch  # noqa: F401  (the slow imports that must not be interrupted halfway)

        from .engine.pluginmanager import _prepare_imports

        _prepare_imports()
    from . import messages

    err = messages.console(stderr=True)
    try:
        from .engine.pluginmanager import get_registry

        registry = get_registry()
        for warning in registry.warnings:
            err.print(messages.warning(warning), soft_wrap=True)
        return args.func(args, registry)
    except UserError as e:
        for line in e.lines:
            err.print(messages.error(line), soft_wrap=True)
        return e.exit_code
    except OSError as e:  # a file that could not be read or written: say which, no traceback
        from .results.files import describe_os_error

        err.print(messages.error(describe_os_error(e)), soft_wrap=True)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="genbench", description="Benchmark generative image models "
                                "under an equal compute budget.")
    p.add_argument("--version", action="version", version=f"genbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train and score every run of a suite",
                         description="Train every run of SUITE under its budget, score it, and "
                         "write records, figures, results.csv/json, leaderboard.md and report.html "
                         "to the output folder.")
    run.add_argument("suite", metavar="SUITE", help="suite file (YAML)")
    run.add_argument("--out", metavar="DIR", help="output folder (default: results/<suite name>)")
    run.add_argument("--device", default="auto", help="auto (CUDA if present, else CPU), cpu, cuda or cuda:N")
    run.add_argument("--threads", type=int, metavar="N",
                     help="torch's CPU thread count (default: torch's, one per core); give each of several "
                          "side-by-side jobs 1")
    run.add_argument("--workers", type=int, metavar="N",
                     help="run up to N runs at once in worker processes (or Ray actors), each with an equal "
                          "share of the cores as threads (or --threads) and the next GPU when several are present")
    run.add_argument("--executor", choices=["local", "ray"], default="local",
                     help="local: this machine's processes (default); ray: Ray actors (genbench[ray])")
    run.add_argument("--address", metavar="ADDR", help="with --executor ray: the Ray cluster to join "
                     "(e.g. 10.0.0.5:6379 or auto); default: start a local Ray instance")
    run.add_argument("--gpus-per-run", type=float, metavar="G", help="with --executor ray: GPUs each run "
                     "declares, fractions allowed (default: 1 on CUDA, else 0)")
    run.add_argument("--resume", action="store_true",
                     help="skip runs whose record exists for the same configuration")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="check suite files without training",
                         description="Run every check of `genbench run` (the file, the names, the "
                         "options, the data) without training. Exit 0 if all are valid, else 2.")
    val.add_argument("suites", nargs="+", metavar="SUITE")
    val.add_argument("--no-data", action="store_true", help="skip looking for the data files")
    val.add_argument("--device", default="cpu", help="check training: settings against this device "
                     "(cpu, auto, cuda or cuda:N; default cpu)")
    val.set_defaults(func=cmd_validate)

    rep = sub.add_parser("report", help="rebuild tables, figures and report.html of a results folder",
                         description="Rebuild leaderboard.md, results.csv, results.json, every figure and "
                         "report.html of DIR from its saved records and snapshots (no training), and "
                         "print the leaderboard in FORMAT.")
    rep.add_argument("dir", metavar="DIR", help="a folder written by `genbench run`")
    rep.add_argument("--format", choices=FORMATS, default="rich",
                     help="what to print: rich (terminal table, default), md, csv, json (one row per run) or html")
    rep.add_argument("--projection", choices=("pca", "tsne"),
                     help="latent scatter projection (default: the suite's report.latent_projection)")
    rep.add_argument("--no-write", action="store_true", help="only print; leave the folder as it is")
    rep.set_defaults(func=cmd_report)

    cmp = sub.add_parser("compare", help="compare the configurations two results folders share",
                         description="One table of the configurations both DIR_A and DIR_B contain: each "
                         "metric in A and B (mean ± 95%% CI), B - A, Welch's p and a verdict; and what "
                         "differs in their setup.")
    cmp.add_argument("dir_a", metavar="DIR_A")
    cmp.add_argument("dir_b", metavar="DIR_B")
    cmp.add_argument("--format", choices=("rich", "md", "csv", "json"), default="rich")
    cmp.set_defaults(func=cmd_compare)

    res = sub.add_parser("rescore", help="score the saved models of a results folder again, without training",
                         description="Load each finished run's model.pt, compute the metrics again (or the ones "
                         "named by --metrics, e.g. one added since), update the records, and rebuild the tables "
                         "and report.html. With the same settings the recorded scores are reproduced exactly.")
    res.add_argument("dir", metavar="DIR", help="a folder written by `genbench run` with save_models: true")
    res.add_argument("--metrics", metavar="A,B", help="only these metrics (comma-separated); default: the suite's")
    res.add_argument("--suite", metavar="FILE", help="take metrics and evaluation settings from this suite file "
                     "instead of DIR/suite.yaml")
    res.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    res.add_argument("--set", metavar="NAME=VALUE", action="append", default=[], dest="overrides",
                     help="change an evaluation-only model option (e.g. ddpm's sample_steps=50) of every run "
                     "whose model has it; repeatable")
    res.set_defaults(func=cmd_rescore)


    chk = sub.add_parser("check-metrics", help="score degraded real images: does each sample metric respond "
                         "to the defects it claims to?",
                         description="Degrade held-out real images of DATASET (noise, blur, salt-and-pepper, "
                         "uniform noise swapped in, classes dropped, a few images per class repeated, training "
                         "images copied) at four strengths each, score them as samples against the test split, "
                         "and check every metric's claims. Writes check.md/csv/json/png; exits 1 when a claim "
                         "fails.")
    chk.add_argument("dataset", metavar="DATASET")
    chk.add_argument("--samples", type=int, default=5000, help="images per degraded set (default 5000)")
    chk.add_argument("--test-images", type=int, help="score against only the first N test images")
    chk.add_argument("--metrics", metavar="A,B", help="only these sample metrics (default: all)")
    chk.add_argument("--kid-subsets", type=int, help="KID's random subsets (default: the metric's 100; fewer "
                     "is faster)")
    chk.add_argument("--seed", type=int, default=0, help="seed of every degradation's draws (default 0)")
    chk.add_argument("--out", metavar="DIR", type=Path, help="default: results/check-metrics/DATASET")
    chk.add_argument("--save-images", action="store_true", help="also write the degraded images (uint8) to "
                     "images.npz, for scoring them with other code")
    chk.add_argument("--device", default="cpu", help="cpu, auto, cuda or cuda:N (default cpu)")
    chk.set_defaults(func=cmd_check_metrics)

    from . import cli_extractor, cli_score

    cli_score.add_parser(sub)
    cli_extractor.add_parser(sub)

    plug = sub.add_parser("plugins", help="list installed models, data sets, metrics and loggers",
                          description="List what the installed plugins register, and which "
                          "distribution provides each.")
    plug.add_argument("--json", action="store_true", help="machine-readable output")
    plug.add_argument("--model", metavar="NAME", help="show the options of one model")
    plug.add_argument("--dataset", metavar="NAME", help="show the options of one data set")
    plug.add_argument("--metric", metavar="NAME", help="show what one metric needs, measures and reports")
    plug.add_argument("--logger", metavar="NAME", help="show the options of one logger")
    plug.set_defaults(func=cmd_plugins)
    return p


def _writes_report(args) -> None:
    """report.html's footer names the command that wrote it."""
    import shlex

    from .render import html

    html.COMMAND = shlex.join(["genbench", *args.argv])


def cmd_run(args, registry) -> int:
    _writes_report(args)
    from .engine.config import load_suite
    from .library import run_suite
    from .results.files import slug

    suite = load_suite(args.suite, registry)
    _suite_warnings(suite)
    out = Path(args.out) if args.out else Path("results") / slug(suite.name)
    if args.threads is not None and not 1 <= args.threads <= 1024:
        raise UserError(f"--threads {args.threads}: give a number of threads from 1 to 1024")
    if args.workers is not None and not 1 <= args.workers <= 256:
        raise UserError(f"--workers {args.workers}: give a number of worker processes from 1 to 256")
    if args.executor != "ray" and (args.address or args.gpus_per_run is not None):
        raise UserError("--address and --gpus-per-run go with --executor ray")
    if args.gpus_per_run is not None and not 0 <= args.gpus_per_run <= 64:
        raise UserError(f"--gpus-per-run {args.gpus_per_run}: give 0 to 64 (fractions allowed)")
    return run_suite(suite, out, device=args.device, resume=args.resume, threads=args.threads,
                     workers=args.workers, executor=args.executor, address=args.address,
                     gpus_per_run=args.gpus_per_run).exit_code


def _suite_warnings(suite) -> None:
    from . import messages

    err = messages.console(stderr=True)
    for warning in suite.warnings:
        err.print(messages.warning(warning), soft_wrap=True)


def cmd_report(args, registry) -> int:
    _writes_report(args)
    from . import messages
    from .render import leaderboard, report
    from .results import files, store

    results = store.load(Path(args.dir))
    err = messages.console(stderr=True)
    if not args.no_write:
        try:
            lock = files.FolderLock(results.out, "report").acquire()
        except files.OutputError as e:
            e.lines[-1] += " (use --no-write to only print)"
            raise
        try:
            with err.status(f"rebuilding the report of {messages.escape(args.dir)}"):
                report.build(results, args.projection)
        finally:
            lock.release()
    results.board()  # its warnings (pooled settings, repeated seeds) belong with the others
    for warning in results.warnings:
        err.print(messages.warning(warning), soft_wrap=True)
    if args.format == "rich":
        console = messages.console()
        board = results.board()
        if not board.empty:
            console.print(leaderboard.rich_table(board, width=console.width))
        if not args.no_write:
            console.print(f"Report: {messages.escape(str(results.out / 'report.html'))}", soft_wrap=True)
    else:
        sys.stdout.write(report.render(results, args.format))
    return 0


from .cliargs import MAX_SET_CHARS, MAX_SET_DEPTH, parse_set  # noqa: E402,F401  (also used by score)


def cmd_rescore(args, registry) -> int:
    _writes_report(args)
    from .engine.rescore import rescore

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    overrides = dict(parse_set(item) for item in args.overrides)
    return rescore(Path(args.dir), registry, metrics, args.suite, args.device, overrides=overrides)


def cmd_check_metrics(args, registry) -> int:
    import io

    import numpy as np
    import torch

    from .engine import metriccheck
    from .engine.runner import pick_device
    from .render import metriccheck as render
    from .results import files

    if args.samples < 100 or (args.test_images is not None and args.test_images < 100):
        raise UserError("--samples and --test-images must be at least 100")
    if args.kid_subsets is not None and args.kid_subsets < 1:
        raise UserError("--kid-subsets must be at least 1")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    out = args.out or Path("results") / "check-metrics" / args.dataset
    kept: dict[str, np.ndarray] = {}

    def keep(name, level, images):
        kept[f"{name}@{level:g}"] = (images * 255).round().to(torch.uint8).numpy()

    result = metriccheck.run(registry, args.dataset, args.samples, args.seed, metrics, args.test_images,
                             pick_device(args.device), keep if args.save_images else None,
                             kid_subsets=args.kid_subsets)
    written = render.write(result, out)
    if kept:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **kept)
        files.write_bytes(out / "images.npz", buffer.getvalue())
        written.append(out / "images.npz")
    print(render.response_table(result, "simple"))
    print()
    print(render.claims_table(result, "simple"))
    failed = render.failures(result)
    print(f"\n{len(result['claims']) - len(failed)} of {len(result['claims'])} claims hold; wrote "
          + ", ".join(str(p) for p in written))
    return 1 if failed else 0


def cmd_compare(args, registry) -> int:
    from . import messages
    from .render import compare
    from .results import store

    a, b = store.load(Path(args.dir_a)), store.load(Path(args.dir_b))
    out = compare.render(a, b, args.format)
    err = messages.console(stderr=True)
    for results in (a, b):
        for warning in results.warnings:
            err.print(messages.warning(warning), soft_wrap=True)
    if isinstance(out, str):
        sys.stdout.write(out)
    else:
        messages.console().print(out)
    return 0


def cmd_validate(args, registry) -> int:
    from . import messages
    from .engine import precision
    from .engine.config import load_suite
    from .engine.runner import load_data, pick_device

    console, problems = messages.console(), []
    device = pick_device(args.device)
    for path in args.suites:
        try:
            suite = load_suite(path, registry)
            _suite_warnings(suite)
            if args.no_data:
                found = precision.check_suite(suite, device)
                if found:
                    raise UserError(*[suite.where(p, m) for p, m in found])
            else:
                data = load_data(suite, registry, device, download=False)
            console.print(messages.escape(
                f"{path}: ok: suite '{suite.name}', {suite.describe_runs()}"
                + ("" if args.no_data else f", {len(data.train)} training images"
                   + (f", {len(data.validation)} validation images" if data.validation is not None else ""))),
                soft_wrap=True)
        except UserError as e:
            problems.extend(e.lines if e.lines[0].startswith(path) else [f"{path}: {l}" for l in e.lines])
    if problems:
        raise UserError(*problems)
    return 0


def cmd_plugins(args, registry) -> int:
    from .render import plugins

    return plugins.show(registry, args.model, args.dataset, args.metric, args.logger, args.json)

if __name__ == "__main__":
    sys.exit(main())
