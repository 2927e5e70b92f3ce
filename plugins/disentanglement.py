"""Disentanglement metrics, as disentanglement_lib defines them (Locatello et al. 2019).

BetaVAE score, FactorVAE score, MIG, DCI (disentanglement, completeness,
informativeness), SAP and modularity, with disentanglement_lib's default parameters.
They score the model's deterministic code (``latent``, a VAE's posterior mean, as the
library does) against a data set's known factors of variation, treated as classes.

Observations come from the evaluation split, whose codes are computed once per run:
where the library draws factors uniformly and renders their image, these draw an
image uniformly from the split (for dSprites, a uniform sample of the factor grid), and
"an image whose factor k equals v" uniformly among the split's images with that level.
The draws come from the run's evaluation stream; scikit-learn's classifiers get a seed
from it. Classifiers (logistic regression, gradient-boosted trees, linear SVMs) need
``pip install 'genbench[disentanglement]'`` (scikit-learn).
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings

import numpy as np
import torch

import genbench
from genbench import Capability, option

LATENT = frozenset({Capability.LATENT})


# -- draws from the evaluation split -----------------------------------------------

class Pool:
    """The evaluation split's codes and factor levels, and draws from them."""

    def __init__(self, codes: np.ndarray, factors: np.ndarray, rng: np.random.Generator):
        self.codes, self.factors, self.rng = codes.astype(np.float64), factors.astype(np.int64), rng
        self._groups = []
        for k in range(factors.shape[1]):  # images sorted by the level of factor k, and where each level starts
            order = np.argsort(factors[:, k], kind="stable")
            counts = np.bincount(factors[:, k])
            self._groups.append((order, np.concatenate([[0], np.cumsum(counts)[:-1]]), counts))

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def num_factors(self) -> int:
        return self.factors.shape[1]

    def uniform(self, shape) -> np.ndarray:
        return self.rng.integers(len(self), size=shape)

    def same_level(self, k: np.ndarray, level: np.ndarray) -> np.ndarray:
        """For each (factor, level) pair, an image drawn uniformly among those with that level."""
        k, level = np.broadcast_arrays(k, level)
        out = np.empty(k.shape, dtype=np.int64)
        u = self.rng.random(k.shape)
        for f in range(self.num_factors):
            order, starts, counts = self._groups[f]
            at = k == f
            out[at] = order[starts[level[at]] + (u[at] * counts[level[at]]).astype(np.int64)]
        return out

    def split(self, num_train: int, num_test: int) -> tuple[np.ndarray, np.ndarray, bool]:
        """Indices of training and test points: disjoint when the split holds enough
        images, else drawn with replacement (the flag says which)."""
        if num_train + num_test <= len(self):
            order = self.rng.permutation(len(self))
            return order[:num_train], order[num_train:num_train + num_test], True
        return self.uniform(num_train), self.uniform(num_test), False


def pool(ctx) -> Pool:
    """The run's pool: codes of the evaluation split (once per run) and a seeded generator."""
    def make():
        codes = ctx.codes.double().cpu().numpy()
        return codes, ctx.data.eval.factors.cpu().numpy()
    codes, factors = ctx.shared("factor_codes", make)
    return Pool(codes, factors, np.random.default_rng(int(torch.randint(2**62, ()))))


def sklearn_seed(p: Pool) -> int:
    return int(p.rng.integers(2**31 - 1))


# -- information ---------------------------------------------------------------------

def discretize(codes: np.ndarray, bins: int) -> np.ndarray:
    """Each code dimension into ``bins`` equal-width bins over its range (the library's
    histogram discretizer): (N, D) integers in 0..bins-1."""
    out = np.empty(codes.shape, dtype=np.int64)
    for i in range(codes.shape[1]):
        edges = np.histogram(codes[:, i], bins)[1][:-1]
        out[:, i] = np.digitize(codes[:, i], edges) - 1
    return out


def mutual_info(a: np.ndarray, b: np.ndarray) -> float:
    """Mutual information (nats) of two discrete variables from paired samples."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    joint = np.bincount(a * (b.max() + 1) + b, minlength=(a.max() + 1) * (b.max() + 1)).astype(np.float64)
    joint = joint.reshape(a.max() + 1, b.max() + 1) / len(a)
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(max(0.0, (joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])).sum()))


def mi_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """(D, K) mutual information of each discretized code dimension with each factor."""
    return np.array([[mutual_info(codes[:, i], factors[:, j]) for j in range(factors.shape[1])]
                     for i in range(codes.shape[1])])


def entropy(factors: np.ndarray) -> np.ndarray:
    return np.array([mutual_info(factors[:, j], factors[:, j]) for j in range(factors.shape[1])])


# -- the metrics -----------------------------------------------------------------------

def num(default: int, help: str):
    return option(default, help, min=2)


@dataclasses.dataclass(frozen=True)
class BetaVAEOptions:
    batch_size: int = num(64, "pairs of images averaged into one training point")
    num_train: int = num(10000, "points the logistic regression is fitted on")
    num_eval: int = num(5000, "points it is scored on")


def beta_vae_points(p: Pool, n: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Higgins et al.: pairs sharing the level of one random factor; the feature is the
    mean absolute difference of their codes, the label the factor."""
    k = p.rng.integers(p.num_factors, size=n)
    first = p.uniform((n, batch_size))
    second = p.same_level(k[:, None], p.factors[first, k[:, None]])
    return np.abs(p.codes[first] - p.codes[second]).mean(axis=1), k


def beta_vae_score(ctx, options: BetaVAEOptions):
    from sklearn.linear_model import LogisticRegression

    p = pool(ctx)
    x_train, y_train = beta_vae_points(p, options.num_train, options.batch_size)
    x_eval, y_eval = beta_vae_points(p, options.num_eval, options.batch_size)
    with warnings.catch_warnings():  # the library's default solver often stops at its iteration cap
        warnings.simplefilter("ignore")
        clf = LogisticRegression(random_state=sklearn_seed(p)).fit(x_train, y_train)
    return float(clf.score(x_eval, y_eval)), {"train_accuracy": float(clf.score(x_train, y_train))}


@dataclasses.dataclass(frozen=True)
class FactorVAEOptions:
    batch_size: int = num(64, "images sharing one factor's level per vote")
    num_train: int = num(10000, "votes the majority-vote classifier is built from")
    num_eval: int = num(5000, "votes it is scored on")
    num_variance_estimate: int = num(10000, "images the global variance of each code dimension is estimated on")
    prune_threshold: float = option(0.05, "dimensions whose global standard deviation is below this are ignored "
                                    "(collapsed to the prior)", min=0)


def factor_vae_votes(p: Pool, n: int, batch_size: int, scale: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Kim & Mnih: images sharing one factor's level; the vote goes from that factor to the
    active dimension of least variance (relative to its global variance)."""
    k = p.rng.integers(p.num_factors, size=n)
    level = p.factors[p.uniform(n), k]
    members = p.same_level(k[:, None], np.broadcast_to(level[:, None], (n, batch_size)))
    local = p.codes[members].var(axis=1, ddof=1)[:, active] / scale[active]
    dims = np.flatnonzero(active)[local.argmin(axis=1)]
    votes = np.zeros((p.num_factors, p.codes.shape[1]), dtype=np.int64)
    np.add.at(votes, (k, dims), 1)
    return votes


def factor_vae_score(ctx, options: FactorVAEOptions):
    p = pool(ctx)
    variances = p.codes[p.uniform(options.num_variance_estimate)].var(axis=0, ddof=1)
    active = np.sqrt(variances) >= options.prune_threshold
    if not active.any():
        return 0.0, {"train_accuracy": 0.0, "active_dims": 0}
    train = factor_vae_votes(p, options.num_train, options.batch_size, variances, active)
    clf = train.argmax(axis=0)  # each dimension votes for the factor it was most often least variant for
    test = factor_vae_votes(p, options.num_eval, options.batch_size, variances, active)
    cols = np.arange(train.shape[1])
    return (float(test[clf, cols].sum() / test.sum()),
            {"train_accuracy": float(train[clf, cols].sum() / train.sum()), "active_dims": int(active.sum())})


@dataclasses.dataclass(frozen=True)
class InfoOptions:
    num_train: int = num(10000, "points drawn from the evaluation split")
    bins: int = num(20, "equal-width bins each code dimension is discretized into")


def mig(ctx, options: InfoOptions):
    """Chen et al.: per factor, the gap between the two code dimensions most informative
    about it, over the factor's entropy; averaged over factors."""
    p = pool(ctx)
    idx = p.uniform(options.num_train)
    m = mi_matrix(discretize(p.codes[idx], options.bins), p.factors[idx])
    top = np.sort(m, axis=0)[::-1]
    gap = (top[0] - top[1]) / entropy(p.factors[idx]) if len(top) > 1 else top[0] / entropy(p.factors[idx])
    return float(gap.mean()), {"per_factor": _per_factor(ctx, gap), "mutual_info": m.round(6).tolist()}


def modularity(ctx, options: InfoOptions):
    """Ridgeway & Mozer: how much each code dimension's information is about one factor only."""
    p = pool(ctx)
    idx = p.uniform(options.num_train)
    sq = np.square(mi_matrix(discretize(p.codes[idx], options.bins), p.factors[idx]))
    top = sq.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = 1.0 - (sq.sum(axis=1) - top) / (top * (sq.shape[1] - 1))
    score[top == 0] = 0.0
    return float(score.mean()), {"per_dimension": score.round(6).tolist()}


@dataclasses.dataclass(frozen=True)
class HeldOutOptions:
    num_train: int = num(10000, "points the classifiers are fitted on")
    num_test: int = num(5000, "points they are scored on")


def dci_parts(ctx, options: HeldOutOptions) -> dict:
    """Eastwood & Williams with gradient-boosted trees per factor (the library's choice):
    importance of each dimension for each factor, and the trees' test accuracy."""
    def compute():
        from sklearn.ensemble import GradientBoostingClassifier

        p = pool(ctx)
        train, test, disjoint = p.split(options.num_train, options.num_test)
        importance = np.zeros((p.codes.shape[1], p.num_factors))
        train_acc, test_acc = [], []
        for k in range(p.num_factors):
            clf = GradientBoostingClassifier(random_state=sklearn_seed(p)).fit(p.codes[train], p.factors[train, k])
            importance[:, k] = np.abs(clf.feature_importances_)
            train_acc.append(float(clf.score(p.codes[train], p.factors[train, k])))
            test_acc.append(float(clf.score(p.codes[test], p.factors[test, k])))
        return {"disentanglement": dci_disentanglement_of(importance),
                "completeness": dci_completeness_of(importance),
                "informativeness": float(np.mean(test_acc)), "informativeness_train": float(np.mean(train_acc)),
                "importance": importance.round(6).tolist(), "disjoint": disjoint}
    return ctx.shared(("dci", options), compute)


def _entropy_base(p: np.ndarray, base: int) -> np.ndarray:
    """Entropy (base ``base``) of each column of non-negative weights (normalised)."""
    p = p + 1e-11
    p = p / p.sum(axis=0, keepdims=True)
    return -(p * np.log(p)).sum(axis=0) / np.log(base)


def dci_disentanglement_of(importance: np.ndarray) -> float:
    per_code = 1.0 - _entropy_base(importance.T, importance.shape[1])
    weights = importance if importance.sum() else np.ones_like(importance)
    return float((per_code * weights.sum(axis=1) / weights.sum()).sum())


def dci_completeness_of(importance: np.ndarray) -> float:
    per_factor = 1.0 - _entropy_base(importance, importance.shape[0])
    weights = importance if importance.sum() else np.ones_like(importance)
    return float((per_factor * weights.sum(axis=0) / weights.sum()).sum())


def _dci(part: str):
    def compute(ctx, options: HeldOutOptions):
        parts = dci_parts(ctx, options)
        extra = {k: v for k, v in parts.items() if k not in ("disentanglement", "completeness", "informativeness")}
        return parts[part], extra
    return compute


def sap(ctx, options: HeldOutOptions):
    """Kumar et al. with discrete factors: per factor, the gap between the two code
    dimensions whose one-dimensional linear SVM predicts it best (test accuracy)."""
    from sklearn.svm import LinearSVC

    p = pool(ctx)
    train, test, disjoint = p.split(options.num_train, options.num_test)
    seed = sklearn_seed(p)
    scores = np.zeros((p.codes.shape[1], p.num_factors))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(p.codes.shape[1]):
            for k in range(p.num_factors):
                clf = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
                clf.fit(p.codes[train, i:i + 1], p.factors[train, k])
                scores[i, k] = clf.score(p.codes[test, i:i + 1], p.factors[test, k])
    top = np.sort(scores, axis=0)
    gap = top[-1] - top[-2] if len(top) > 1 else top[-1]
    return float(gap.mean()), {"per_factor": _per_factor(ctx, gap), "accuracy": scores.round(6).tolist(),
                               "disjoint": disjoint}


def _per_factor(ctx, values) -> dict:
    return {f.name: round(float(v), 6) for f, v in zip(ctx.data.info.factors, values)}


def needs_factors(uses_sklearn: bool):
    def check(setup):
        if not setup.info.factors:
            yield (f"needs a data set with factors of variation (such as dsprites); "
                   f"'{setup.info.name}' declares none")
        if uses_sklearn:
            try:
                importlib.import_module("sklearn")
            except ImportError:
                yield "needs scikit-learn: pip install 'genbench[disentanglement]'"
    return check


def _metric(name, compute, description, Options, sklearn=True):
    return genbench.Metric(name, compute, requires=LATENT, higher_is_better=True,
                           description=description, Options=Options, check=needs_factors(sklearn))


METRICS = (
    _metric("beta_vae_score", beta_vae_score, "BetaVAE score: accuracy of a linear classifier telling which "
            "factor a batch of pairs shares from their code differences", BetaVAEOptions),
    _metric("factor_vae_score", factor_vae_score, "FactorVAE score: majority-vote accuracy of the code dimension "
            "least variant when one factor is fixed", FactorVAEOptions, sklearn=False),
    _metric("mig", mig, "mutual information gap: top-two gap in a factor's information over its entropy",
            InfoOptions, sklearn=False),
    _metric("dci_disentanglement", _dci("disentanglement"), "DCI disentanglement: each dimension's importance "
            "concentrated on one factor (gradient-boosted trees)", HeldOutOptions),
    _metric("dci_completeness", _dci("completeness"), "DCI completeness: each factor captured by one dimension",
            HeldOutOptions),
    _metric("dci_informativeness", _dci("informativeness"), "DCI informativeness: test accuracy of the trees "
            "predicting each factor from the code", HeldOutOptions),
    _metric("sap", sap, "SAP: top-two gap in how well one code dimension predicts a factor (linear SVMs)",
            HeldOutOptions),
    _metric("modularity", modularity, "modularity: each dimension informative about one factor only",
            InfoOptions, sklearn=False),
)


@genbench.hookimpl
def register_metrics(register):
    for metric in METRICS:
        register(metric)
