"""``genbench extractor train``: a domain feature extractor for any data set."""

from __future__ import annotations

from pathlib import Path

from .errors import UserError


def add_parser(sub) -> None:
    ext = sub.add_parser("extractor", help="train a data set's domain feature extractor",
                         description="Domain feature extractors give FID, KID and precision/recall a feature "
                         "space for any data set (see README, 'Feature extractors').")
    ext_sub = ext.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = ext_sub.add_parser("train", help="train one on a data set's train split",
                               description="Train a domain feature extractor on the train split of DATASET, or of "
                               "the data set a SUITE file names with its options (an image folder, say), seeded "
                               "and deterministic; write it to FILE, and print its test accuracy and the lines "
                               "that pin it: in a suite (evaluation.feature_extractor: {path, sha256}) or in "
                               "the data set plugin's ExtractorSpec.")
    train.add_argument("dataset", metavar="DATASET|SUITE")
    train.add_argument("--out", metavar="FILE", required=True, type=Path)
    train.add_argument("--epochs", type=int, default=6, help="passes over the train split (default 6)")
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--subset", type=int, help="train on only the first N images (for a quick try)")
    train.add_argument("--set", metavar="OPTION=VALUE", action="append", default=[], dest="options",
                       help="a data set option, e.g. --set subset=20000 for color_dsprites; repeatable")
    train.set_defaults(func=cmd_train)


def dataset_options(registry, name: str, items: list[str]):
    """A registered data set's options from ``--set OPTION=VALUE`` items, checked as a suite's are."""
    from .api import options as opt
    from .cliargs import parse_set
    from .errors import did_you_mean

    if name not in registry.datasets:
        raise UserError(f"data set '{name}' is not installed{did_you_mean(name, registry.datasets)}")
    built, errors = opt.build(registry.datasets[name].Options, dict(parse_set(item) for item in items))
    if errors:
        raise UserError(*[f"--set {opt.format_path(path)}: {message}" for path, message in errors])
    return built


def cmd_train(args, registry) -> int:
    from .engine import extractors
    from .engine.config import load_suite

    if args.epochs < 1 or args.batch_size < 1 or (args.subset is not None and args.subset < 1):
        raise UserError("--epochs, --batch-size and --subset must be at least 1")
    dataset, options = args.dataset, None
    if args.dataset.endswith((".yaml", ".yml")) or Path(args.dataset).is_file():
        if args.options:
            raise UserError("--set: a suite file sets the data set's options; edit its dataset.options")
        suite = load_suite(args.dataset, registry, loggers=False, extractor=False)
        dataset, options = suite.dataset, suite.dataset_options
    elif args.options:
        options = dataset_options(registry, dataset, args.options)
    accuracy, sha = extractors.train(registry, dataset, args.out, args.epochs, args.batch_size, args.subset,
                                     options=options)
    name = dataset if isinstance(dataset, str) else dataset.name
    cls = registry.datasets[name]
    shape = cls.image_shape_of(options) if options is not None else cls.image_shape
    channels, classes = shape[0], len(cls.class_names) or "N"
    print(f"{name}: test accuracy {accuracy:.4f}; wrote {args.out} ({args.out.stat().st_size} bytes)")
    print(f"sha256 {sha}")
    print(f"pin it in a suite: evaluation: {{feature_extractor: {{path: {args.out}, sha256: {sha}}}}}")
    print(f"or in the data set plugin: extractor = ExtractorSpec(Path(...) / {args.out.name!r}, {sha!r}, "
          f"num_classes={classes}, in_channels={channels}, architecture='v2')")
    return 0
