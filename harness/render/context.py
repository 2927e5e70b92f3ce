"""Words about a results folder shared by the text and HTML renderings."""

from __future__ import annotations

from pathlib import PurePath

from ..results.store import Results
from . import leaderboard

FIGURES = "figures"  # the suite-level figures' folder


def projection(results: Results, override: str | None = None) -> str:
    return override or (results.suite.get("report") or {}).get("latent_projection", "pca")


def context(results: Results) -> str:
    """One paragraph on what was run where, for the markdown leaderboard."""
    s, env = results.suite, results.env
    dataset = s.get("dataset") or {}
    budget = ", ".join(f"{v:g} {k}" for k, v in (s.get("budget") or {}).items())
    versions = env.get("versions") or {}
    parts = [f"Data set {dataset.get('name', '?')}, scored on its {dataset.get('eval_split', 'test')} split",
             *([f"training budget per run: {budget or '?'} (first reached)"] if "score" not in s else
               [f"sample sets made elsewhere, scored by `genbench score` ({len(results.records)} sets)"]),
             f"seeds {', '.join(map(str, s.get('seeds', [])))}",
             *([f"searched configurations: {s['trials']} trials each ({s.get('sampler', 'random')} sampler), "
                f"scored on {dataset.get('validation', '?')} validation images held out of the training split "
                f"(tuning.csv)"] if s.get("trials") else []),
             f"device {env.get('device_name', env.get('device', '?'))}",
             f"genbench {versions.get('genbench', '?')}, torch {versions.get('torch', '?')}"]
    info = leaderboard.metric_info(results.records)
    if any("sample" in meta.get("requires", ()) for meta in info.values()):
        evaluation = s.get("evaluation") or {}
        extractor = evaluation.get("feature_extractor", "domain")
        counts = sorted({(r.get("samples") or {}).get("count") for r in results.records} - {None}) or \
            [evaluation.get("num_samples", "?")]
        if isinstance(extractor, dict):  # a file the suite pinned (escaped where the text lands)
            space = f"the extractor {PurePath(str(extractor.get('path', '?'))).name} the suite pinned " \
                    f"(sha256 {str(extractor.get('sha256', '?'))[:12]}...; not comparable with Inception FID)"
        else:
            space = ("the data set's shipped classifier (not comparable with Inception FID from papers)"
                     if extractor == "domain" else "Inception-v3")
        parts.append(f"sample metrics on {'/'.join(map(str, counts))} samples in the feature space of {space}")
    return "; ".join(parts) + "."
