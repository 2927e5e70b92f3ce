"""The search stage: K trials per searched run entry, drawn by Optuna, then the chosen options.

Every trial is a run (its own record under ``runs/``, trained on the suite's budget,
scored on the validation split by the search's metric only). The Optuna study of each
searched entry lives in ``search/study.log`` (Optuna's journal file: JSON lines, never a
pickle), so a stopped search resumes where it stopped:

- trial n is Optuna trial n of the entry's study; a trial asked before the stop keeps
  the options it was given, and a finished trial's record is reused, not run again;
- each trial is drawn by a sampler seeded from ``search_seed``, the study and n, so the
  same suite draws the same trials whether or not it was stopped (for TPE, given the
  same earlier results, which a serial run or any number of workers gives: TPE trials
  are asked one per entry per round, after the previous round is told);
- a failed trial counts: it spent its share of the budget, and is not run again.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rich.markup import escape

from .. import messages
from ..api import options as opt
from ..errors import UserError
from ..results import files
from ..results.tuning import best_trial, trial_value
from .config import Suite
from .driver import Driver
from .evaluate import derive_seed
from .pluginmanager import Registry
from .runentries import RunSpec, TrialSpec
from .searchspace import Search

STUDY_LOG = ("search", "study.log")


@dataclasses.dataclass
class Outcome:
    """One entry's search: its trials' records (by number) and the best of them."""

    search: Search
    records: list[dict]
    best: dict | None

    def summary(self, sampler: str) -> dict:
        """What a final run records as ``search``."""
        scored = [r for r in self.records if trial_value(r, self.search.metric) is not None]
        best = self.best or {}
        return {"trials": len(self.records), "trials_ok": len(scored), "sampler": sampler,
                "metric": self.search.metric, "split": "validation",
                "best_trial": (best.get("trial") or {}).get("number"),
                "best_value": trial_value(best, self.search.metric) if best else None,
                "chosen": dict((best.get("trial") or {}).get("params") or {})}


def run_searches(suite: Suite, registry: Registry, drive: Driver, out) -> tuple[list[Outcome], int]:
    """Run (or resume) every searched entry's trials; return each entry's outcome and
    how many trials failed."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = drive.console
    studies = {s.label: _study(suite, s, out, lambda w: console.print(messages.warning(w), soft_wrap=True))
               for s in suite.searches}
    console.print(f"[bold]search[/]: {len(suite.searches)} run entries x {suite.trials} trials "
                  f"({suite.sampler} sampler), scored on the validation split "
                  f"({len(drive.data.validation)} images)")
    records: dict[str, dict[int, dict]] = {s.label: {} for s in suite.searches}
    failed = 0

    def tell(run: RunSpec, rec: dict) -> None:
        study = studies[run.trial.search]
        records[run.trial.search][run.trial.number] = rec
        trial = study.get_trials(deepcopy=False)[run.trial.number]
        if trial.state.is_finished():
            return  # told before the stop
        value = trial_value(rec, run.trial.metric)
        if value is None:
            study.tell(run.trial.number, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(run.trial.number, value)

    # Random trials do not depend on each other: all at once, trial-major, so a stopped
    # search has given every entry about as many trials. TPE's depend on the results so far.
    rounds = [range(suite.trials)] if suite.sampler == "random" else [[n] for n in range(suite.trials)]
    for numbers in rounds:
        runs = [_trial_run(suite, registry, s, n, _params(suite, s, studies[s.label], n))
                for n in numbers for s in suite.searches]
        _, lost = drive.run(runs, "search" if suite.sampler == "random" else
                            f"search round {numbers[0] + 1}/{suite.trials}", on_record=tell)
        failed += lost
    outcomes = []
    for s in suite.searches:
        recs = [records[s.label][n] for n in sorted(records[s.label])]
        outcomes.append(Outcome(s, recs, best_trial(recs, s.metric, s.higher_is_better)))
        if outcomes[-1].best is None:  # counted as a failure: the suite exits non-zero
            console.print(f"[red]{escape(s.label)}: no trial gave a {escape(s.metric)} score; it has no final "
                          f"runs[/]")
            failed += 1
    return outcomes, failed


def final_runs(suite: Suite, registry: Registry, outcomes: list[Outcome]) -> list[RunSpec]:
    """Each entry's best options, trained on every seed of the suite, scored on the test split."""
    runs = []
    for o in outcomes:
        if o.best is None:
            continue
        options = _options(registry, o.search, o.best["trial"]["params"], o.best["run_id"])
        runs += [RunSpec(o.search.label, o.search.model, options, seed, training=o.search.training,
                         where=o.search.where) for seed in suite.seeds]
    return runs


def annotator(outcomes: list[Outcome], suite: Suite):
    """Adds ``search`` (trials, chosen options...) to each final run's record."""
    summaries = {o.search.label: o.summary(suite.sampler) for o in outcomes}

    def annotate(run: RunSpec, rec: dict) -> None:
        if run.trial is None and run.label in summaries:
            rec["search"] = summaries[run.label]
    return annotate


def _study(suite: Suite, search: Search, out, warn=None):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path = files.inside(out, *STUDY_LOG)  # checked: a link inside a folder we were sent is refused
    path.parent.mkdir(parents=True, exist_ok=True)
    _mend_journal(path, warn)
    try:
        # The file backend's journal is JSON; only Redis backends keep pickled snapshots.
        storage = JournalStorage(JournalFileBackend(str(path), lock_obj=_FolderLocked()))
        direction = "maximize" if search.higher_is_better else "minimize"
        study = optuna.create_study(study_name=search.study_name, storage=storage, direction=direction,
                                    load_if_exists=True)
        study.get_trials(deepcopy=False)  # replays the journal here, where its errors are one line
        return study
    except Exception as err:  # a journal edited into something Optuna cannot replay
        raise UserError(f"{path}: the search's Optuna study cannot be read ({type(err).__name__}: {err}); "
                        f"{MOVE_AWAY}") from None


MOVE_AWAY = "move it away and --resume: finished trials are reused, and the same trials are drawn again"


class _FolderLocked:
    """Optuna's journal lock, as none: genbench holds the results folder's lock (one writer),
    and a lock file that a killed search left behind would make the next one wait for nothing."""

    def acquire(self) -> bool:
        return True

    def release(self) -> None:
        pass


def _mend_journal(path, warn) -> None:
    """A torn last line (a search killed mid-write) is cut off with a warning; Optuna would
    append the next entry to it and corrupt the journal. Damage before it is one error line."""
    from ..results import readback

    stale = path.with_name(path.name + ".lock")  # left by a search killed under Optuna's own lock
    if stale.is_symlink() or stale.exists():
        stale.unlink()
    if not path.is_file():
        return
    data = path.read_bytes()
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1], 1):
        try:
            readback.parse_json(line.decode("utf-8"))
        except (UnicodeDecodeError, readback.BadFile) as err:
            raise UserError(f"{path}: line {number} of {len(lines) - 1} is damaged ({err}); {MOVE_AWAY}") from None
    if lines[-1]:
        files.write_bytes(path, data[:len(data) - len(lines[-1])])
        if warn is not None:
            warn(f"{path}: its last line was torn (a search stopped mid-write); it is ignored and that trial "
                 f"is asked again")


def _sampler(suite: Suite, search: Search, number: int):
    from optuna import samplers

    seed = derive_seed(suite.search_seed, f"{search.study_name}/{number}") % 2**32
    if suite.sampler == "random":
        return samplers.RandomSampler(seed=seed)
    # Optuna's default of 10 random start-up trials would leave a search of 8 all random.
    return samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(suite.trials))


def startup_trials(trials: int) -> int:
    """TPE's random start-up trials: a third of the budget, between 1 and 10."""
    return max(1, min(10, trials // 3))


def _params(suite: Suite, search: Search, study, number: int) -> dict[str, Any]:
    """Trial ``number``'s options: as asked before (a resumed search), or asked now."""
    trials = study.get_trials(deepcopy=False)
    by_name = {p.name: p for p in search.space}
    if number < len(trials):
        try:
            drawn = trials[number].params
            if set(drawn) == set(by_name):
                return {name: by_name[name].value(value) for name, value in drawn.items()}
            problem = "other options than the search"
        except Exception as err:  # an index or value the journal holds that this search cannot have drawn
            problem = str(err)
        raise UserError(f"{'/'.join(STUDY_LOG)}: trial {number} of '{search.label}': {problem}; {MOVE_AWAY}")
    if number == len(trials):
        study.sampler = _sampler(suite, search, number)
        drawn = study.ask({p.name: p.distribution() for p in search.space}).params
    else:
        raise UserError(f"the study of '{search.label}' has {len(trials)} trials, but trial {number} was asked for")
    return {name: by_name[name].value(value) for name, value in drawn.items()}


def _options(registry: Registry, search: Search, params: dict, what: str):
    """The model's options: the entry's fixed ones and ``params``."""
    options, errs = opt.build(registry.models[search.model].Options, {**dict(search.fixed), **params})
    if errs:  # cannot happen for params the search drew; a hand-edited record or study might
        raise UserError(f"{what}: its options are not valid for model '{search.model}': {errs[0][1]}")
    return options


def _trial_run(suite: Suite, registry: Registry, search: Search, number: int, params: dict) -> RunSpec:
    options = _options(registry, search, params, f"trial {number} of '{search.label}'")
    trial = TrialSpec(search.label, search.study_name, number, search.metric,
                      tuple((k, params[k]) for k in sorted(params)))
    return RunSpec(f"{search.label} trial {number}", search.model, options, suite.search_seed + number, trial,
                   search.training, search.where)
