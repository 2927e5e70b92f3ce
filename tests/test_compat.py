"""Plugins written against an earlier release keep working (issue 26, item 4): every module
that moved still imports from its old path, with a warning naming the new one, and a
changed default never silently changes what an existing file means."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from genbench.compat import MOVED, REMOVED, GenbenchDeprecationWarning

from conftest import genbench_cmd

# Every public name of each module genbench had before the layout by stage (git 4280a8f~1):
# what a plugin written then could import.
PREVIOUS = {'budget': ['BudgetClock'],
 'compare': ['SETUP_KEYS', 'frame', 'only_in', 'render', 'setup_differences'],
 'config': ['BudgetConfig', 'DatasetConfig', 'MAX_RUNS', 'ReportOptions', 'RunEntry', 'RunSpec', 'Suite',
            'SuiteFile', 'config_hash', 'load_suite'],
 'data': ['CACHE_DIR', 'DEBIAN_DATASETS', 'DataError', 'DataNotFound', 'Dataset', 'DeviceData', 'ImageSet',
          'MAX_IDX_BYTES', 'VALIDATION_SEED', 'find_files', 'load_split', 'prepare', 'read_idx', 'search_roots',
          'to_float', 'torchvision_download'],
 'extractor': ['DomainNet', 'ExtractorMismatch', 'ExtractorSpec', 'FEATURES', 'extract', 'file_sha256', 'load'],
 'fidelity': ['INCEPTION_HELP', 'features', 'fid', 'kid', 'precision_recall', 'register', 'torch_fidelity'],
 'figures': ['DPI', 'comparison', 'interpolation', 'latent', 'losses', 'manifold', 'plain', 'project',
             'reconstructions', 'run_figure_paths', 'run_figures', 'sample_comparison', 'samples', 'save',
             'show_grid', 'sweep', 'sweeps', 'tile'],
 'files': ['FolderLock', 'LOCK', 'OutputError', 'TMP_SUFFIX', 'atomic_write', 'check_writable', 'describe_os_error',
           'finite', 'inside', 'remove_if_only_lock', 'remove_stale_temporaries', 'safe_part', 'slug',
           'write_bytes', 'write_json', 'write_text'],
 'hookspecs': ['hookimpl', 'hookspec', 'register_datasets', 'register_metrics', 'register_models'],
 'html': ['CSS', 'RUN_FIGURES', 'render'],
 'leaderboard': ['Board', 'Cell', 'Row', 'SETTINGS', 'TIE_MARK', 'VERSIONS', 'build', 'extractor_sha', 'glossary',
                 'group_runs', 'header', 'legend', 'markdown', 'md_escape', 'metric_info', 'rich_table',
                 'settings_key', 'table_headers', 'table_rows', 'units_caption'],
 'losses': ['bce_with_logits', 'gaussian_kl', 'reparameterize'],
 'metrics': ['EvalContext', 'EvalOptions', 'Metric', 'check_counts', 'derive_seed', 'evaluate', 'seeded',
             'subset_evaluator'],
 'model': ['Batch', 'Capability', 'DataInfo', 'Model', 'NoOptions', 'Step'],
 'options': ['OptionInfo', 'Path', 'as_dict', 'build', 'describe', 'format_path', 'option', 'type_name'],
 'outputs': ['ModelOutputError', 'images', 'posterior', 'tensor'],
 'pluginmanager': ['ENV_DISABLE', 'ENV_LOAD', 'GROUP', 'RUNTIME', 'Registry', 'Source', 'get_registry',
                   'load_entry_points', 'pm', 'source_of'],
 'record': ['FIELDS', 'MAX_RECORD_BYTES', 'RECORD', 'STATUSES', 'check_record', 'device_description', 'environment',
            'load_record', 'read_records', 'results_frame', 'versions'],
 'rescore': ['rescore'],
 'runner': ['RESUME_KEYS', 'RESUME_VERSIONS', 'check_out_dir', 'execute_run', 'load_data', 'pick_device',
            'run_suite', 'seed_everything'],
 'snapshot': ['BadSnapshot', 'GRID', 'IMAGES', 'INTERPOLATION', 'LABELS', 'MANIFOLD', 'MAX_BYTES', 'SNAPSHOT',
              'check', 'load', 'save', 'showcase_index', 'take'],
 'stats': ['ALPHA', 'LEVEL', 'Summary', 'format_value', 'summarize', 'tied', 'welch_p'],
 'train': ['ProgressFn', 'ScoreFn', 'TrainResult', 'TrainingDiverged', 'train'],
 'yamlfile': ['MAX_FILE_BYTES', 'MAX_NODES', 'TooLarge', 'line_map', 'parse']}


@pytest.mark.parametrize("old", sorted(PREVIOUS))
def test_every_name_of_the_previous_release_imports_from_its_old_path(old):
    sys.modules.pop(f"genbench.{old}", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(f"genbench.{old}")
    moved = [w for w in caught if issubclass(w.category, GenbenchDeprecationWarning)]
    assert len(moved) == 1 and f"genbench.{old} moved to genbench.{MOVED[old][0]}" in str(moved[0].message)
    assert moved[0].filename == __file__  # attributed to the importing line, not to importlib
    for name in PREVIOUS[old]:
        if (old, name) in REMOVED:
            with pytest.raises(AttributeError, match=f"genbench.{old}.{name} was removed: "):
                getattr(module, name)
            continue
        homes = [importlib.import_module(f"genbench.{home}") for home in MOVED[old]]
        new = next(m for m in homes if hasattr(m, name))
        assert getattr(module, name) is getattr(new, name), name


def test_the_engine_yamlfile_path_of_this_release_still_imports():
    sys.modules.pop("genbench.engine.yamlfile", None)
    with pytest.warns(GenbenchDeprecationWarning, match="genbench.engine.yamlfile moved to genbench.results.yamlfile"):
        from genbench.engine import yamlfile
    assert yamlfile.parse("a: 1")[0] == {"a": 1}


OLD_PLUGIN = """
    import torch
    from pathlib import Path

    import genbench
    from genbench.data import find_files
    from genbench.extractor import ExtractorSpec

    WEIGHTS = Path(__file__).parent / "blobs_v1.pt"


    class Blobs(genbench.Dataset):
        name = "blobs"
        description = "a procedural data set written against the earlier README"
        image_shape = (1, 28, 28)
        class_names = ("a", "b")
        extractor = ExtractorSpec(WEIGHTS, SHA, num_classes=2ARCHITECTURE)

        def load(self, split, root, download):
            g = torch.Generator().manual_seed(0 if split == "train" else 1)
            return genbench.ImageSet(torch.randint(0, 255, (256, 1, 28, 28), generator=g, dtype=torch.uint8),
                                     torch.arange(256) % 2)


    def brightness(ctx):
        return float(ctx.samples.mean())


    @genbench.hookimpl
    def register_datasets(register):
        register(Blobs)


    @genbench.hookimpl
    def register_metrics(register):
        register(genbench.Metric("brightness", brightness, {genbench.Capability.SAMPLE}, True, "", "mean pixel"))
"""


def _install_old_plugin(tmp_path, architecture: str):
    """The plugin and a v1 extractor file (the network before v2), installed as a distribution."""
    from genbench.api.extractor import DomainNet, file_sha256

    site = tmp_path / "site"
    (site / "blobs_plugin-0.1.dist-info").mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(DomainNet(1, 2).state_dict(), site / "blobs_v1.pt")
    code = textwrap.dedent(OLD_PLUGIN).replace("SHA", repr(file_sha256(site / "blobs_v1.pt")), 1)
    (site / "blobs_plugin.py").write_text(code.replace("ARCHITECTURE", architecture))
    (site / "blobs_plugin-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: blobs-plugin\n"
                                                                   "Version: 0.1\n")
    (site / "blobs_plugin-0.1.dist-info" / "entry_points.txt").write_text("[genbench]\nblobs = blobs_plugin\n")
    return site


SUITE = """
name: old
dataset: {name: blobs}
budget: {steps: 2}
seeds: [0]
batch_size: 64
metrics: [fid, brightness]
evaluation: {num_samples: 200}
runs:
  - model: vae
    options: {hidden_dim: 16, latent_dim: 2}
"""


@pytest.mark.parametrize("architecture, ok", [("", True), (", architecture='v1'", True),
                                              (", architecture='v2'", False)])
def test_a_plugin_written_for_the_previous_release_still_runs(tmp_path, architecture, ok):
    site = _install_old_plugin(tmp_path, architecture)
    (tmp_path / "old.yaml").write_text(SUITE)
    proc = subprocess.run(genbench_cmd() + ["run", "old.yaml", "--out", "out", "--device", "cpu"], cwd=tmp_path,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(site)}, timeout=300)
    assert "Traceback" not in proc.stderr
    assert "plugin 'blobs' (blobs-plugin 0.1): genbench.data moved to genbench.api.dataset" in proc.stderr
    assert "plugin 'blobs' (blobs-plugin 0.1): genbench.extractor moved to genbench.api.extractor" in proc.stderr
    if ok:  # the v1 file is read as v1, whatever the new default
        assert proc.returncode == 0, proc.stderr
        assert "fid" in (tmp_path / "out" / "leaderboard.md").read_text()
    else:  # a spec that contradicts its file is refused in one line, never applied
        assert proc.returncode == 2
        assert ("blobs_v1.pt holds a v1 network, but its ExtractorSpec says architecture='v2'; set "
                "architecture='v1', or leave it out to read it from the file") in proc.stderr
