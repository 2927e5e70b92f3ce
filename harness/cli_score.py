"""``genbench score``: the command line of :func:`genbench.score_sets`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import UserError

DESCRIPTION = """Score sample sets made elsewhere against a data set's reference images, with
the metrics, feature extractor and seeded evaluation of `genbench run`, and
write a results folder like run's (leaderboard, results.csv/json, report.html
with sample grids), which `genbench compare` can set beside a run's. Each
SAMPLES is an .npz/.npy array (uint8 in 0..255 or floats in [0, 1]; N x H x W,
N x C x H x W or N x H x W x C), a .pt tensor, or a folder of PNG/JPEG images.
Sets named NAME-seed<k> are seed k of configuration NAME."""


def add_parser(sub) -> None:
    p = sub.add_parser("score", help="score sample sets made elsewhere (files or image folders)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("samples", nargs="+", metavar="SAMPLES", help="sample sets: files, folders or quoted globs")
    p.add_argument("--dataset", required=True, metavar="NAME", help="the data set whose images are the reference")
    p.add_argument("--split", choices=("test", "validation"), default="test",
                   help="reference images: the test split (default), or 10,000 training images held out")
    p.add_argument("--metrics", metavar="A,B", help="default: every installed metric that needs only samples")
    p.add_argument("--labels", metavar="FILE", type=Path, help="the class of each sample (.npy, .npz, .pt or text), "
                   "for per-class FID and conditional accuracy")
    p.add_argument("--group", metavar="NAME", help="score every set as a seed of configuration NAME")
    p.add_argument("--set", metavar="METRIC.OPTION=VALUE", action="append", default=[], dest="options",
                   help="a metric option, e.g. kid.subset_size=500; repeatable")
    p.add_argument("--extractor", default="domain", metavar="domain|inception|FILE",
                   help="feature space: the data set's pinned domain extractor (default), Inception-v3, or a "
                   "weights file `genbench extractor train` wrote (its SHA-256 goes in each record)")
    p.add_argument("--extractor-weights", metavar="FILE", help="with --extractor inception: the local weights file")
    p.add_argument("--real-images", type=int, metavar="N", help="use only the first N reference images")
    p.add_argument("--no-cache", action="store_true", help="compute the reference statistics again; keep nothing")
    p.add_argument("--reference", metavar="FILE", type=Path, help="use reference statistics exported by "
                   "--export-reference (refused unless they are of the same images and extractor)")
    p.add_argument("--export-reference", metavar="FILE", type=Path, help="also write the reference statistics "
                   "to FILE (.npz, no pickle)")
    p.add_argument("--out", metavar="DIR", type=Path, help="results folder (default: results/score-DATASET)")
    p.add_argument("--format", choices=("rich", "md", "csv", "json"), default="rich", help="what to print")
    p.add_argument("--device", default="cpu", help="cpu, auto, cuda or cuda:N (default cpu)")
    p.set_defaults(func=cmd_score)


def metric_options(items: list[str]) -> dict[str, dict]:
    from .cliargs import parse_set

    out: dict[str, dict] = {}
    for item in items:
        name, value = parse_set(item)
        metric, dot, option = name.partition(".")
        if not dot or not metric or not option:
            raise UserError(f"--set {name}: write METRIC.OPTION=VALUE, e.g. --set kid.subset_size=500")
        out.setdefault(metric, {})[option] = value
    return out


def cmd_score(args, registry) -> int:
    from . import library, messages
    from .engine.runner import pick_device
    from .render import leaderboard, report
    from .results import store

    if args.real_images is not None and args.real_images < 2:
        raise UserError("--real-images must be at least 2")
    device = str(pick_device(args.device))
    out = args.out or Path("results") / f"score-{args.dataset}"
    err = messages.console(stderr=True)
    library.score_sets(args.samples, args.dataset, [m.strip() for m in args.metrics.split(",") if m.strip()]
                       if args.metrics else None, labels=args.labels, group=args.group, split=args.split,
                       extractor=args.extractor, extractor_weights=args.extractor_weights,
                       options=metric_options(args.options), real_images=args.real_images, cache=not args.no_cache,
                       reference=args.reference, export_reference=args.export_reference, device=device, out=out,
                       say=lambda line: err.print(messages.escape(line), soft_wrap=True))
    results = store.load(out)
    if args.format == "rich":
        console = messages.console()
        console.print(leaderboard.rich_table(results.board(), width=console.width))
        console.print(f"Results in {messages.escape(str(out))}/; report: "
                      f"{messages.escape(str(out / 'report.html'))}", soft_wrap=True)
    else:
        sys.stdout.write(report.render(results, args.format))
    return 0
