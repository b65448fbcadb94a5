# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 07 · Do the models generalize? Corruptions, another site, calibration, explanation stability
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/xai-helpers/xai-helpers/blob/v0.1.0/notebooks/07_generalization.ipynb)
#
# > **You will learn**
# > - how accuracy, F1 and calibration fall under graded corruptions and on another site's images
# > - how to evaluate on an external set whose class names differ (`class_map`) and why training images found in it are left out
# > - whether the explanations stay put when the image degrades, and whether they point at another hospital's expert masks
# >
# > **You need**
# > - notebook [02](02_training.ipynb) run into the same `run_dir`; notebook [05](05_explanation_metrics.ipynb) for the localisation ideas
# > - 97 s on the demo, measured on a 2-core Intel Xeon with AMX (bf16); 147 s on the same CPU with AVX2 kernels only (fp32, as an AVX2-only CPU runs it); the runner prints the time it expects on your machine before it starts
# > - the [glossary](../docs/glossary.md) for any term used here without a definition
#
# A test split drawn from the same collection as the training images says little about a model in another hospital. This notebook asks four questions of every trained model and fold:
#
# 1. **Degraded images**: how fast do accuracy and F1 fall under noise, blur, lower contrast, JPEG compression, lower resolution and a simulated scanner intensity shift, at graded severities (1 mild … 5 severe, the same corrupted images for every model)?
# 2. **Another site**: how does it do on an external test set (`external_data_root`, any supported layout, its classes mapped onto ours by canonical name, so `glioma_tumor` is `glioma`, or by `class_map`; classes without a match are reported, not dropped silently)? Every external image is first checked against the training images (identical bytes, or a perceptual hash within the audit's threshold): copies are left out and counted, since a public 'external' set often holds the training images (Nickparvar's brain MRI set contains Bhuvaji's). The embedded synthetic dataset brings its own: a second synthetic set with brighter tissue and twice the noise.
# 3. **Calibration**: is its confidence still honest there (expected calibration error, 15 bins; reliability diagrams)?
# 4. **Explanations**: do the CAMs stay put when the image degrades (rank correlation of each corrupted image's map with its clean map, for the same target class)?
#
# Writes `generalization.csv` (one row per model, fold and condition), `generalization_reliability.csv`, `generalization_cams.csv`, `generalization_external.json` and, for an external set with lesion masks, `generalization_localisation.csv`.

# %% tags=["install"]
# Setup outside this repository (Colab, Binder, a plain Jupyter): install xai-helpers at a pinned
# release and work in a folder of its own (data, cache and runs go there). Inside the repository, or
# under the runner, the package is already importable and this cell does nothing.
XAI_HELPERS_URL = 'https://github.com/xai-helpers/xai-helpers'
XAI_HELPERS_REF = 'v0.1.0'  # a tag or a commit
import importlib.util
if importlib.util.find_spec('xai_helpers') is None:
    import os
    import subprocess
    import sys
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--quiet',
                    f'xai-helpers @ git+{XAI_HELPERS_URL}@{XAI_HELPERS_REF}'], check=True)
    os.makedirs('xai-helpers-work', exist_ok=True)
    os.chdir('xai-helpers-work')
    print('installed xai-helpers', XAI_HELPERS_REF, '; working folder:', os.getcwd())

# %% tags=["parameters"]
# Parameters (papermill injects overrides after this cell; names shared by every notebook,
# documented in docs/running.md). Defaults: the 'demo' profile on the embedded synthetic dataset.
dataset = 'synthetic'
data_root = 'data/synthetic'
synthetic_per_class = 100
max_per_class = None
leak_policy = 'drop_train'
image_size = 64
resize_mode = 'squash'
run_dir = 'runs/demo'
seed = 0
device = 'auto'
interactive = True
executor = 'local'
ray_address = None
fit_resources = None
data_shared = False
models = ['resnet50', 'densenet121', 'vgg16', 'efficientnet_b0']
baselines = ['baseline_hgb', 'baseline_logreg']
weights = 'none'
folds = 3
epochs = 6
batch_size = {'default': 32, 'vgg16': 8}
lr = {'default': 0.001, 'vgg16': 0.0001}
lr_schedule = {'default': 'cosine', 'vgg16': 'none'}
warmup_epochs = 0
patience = 3
freeze_epochs = 0
class_weighted = False
precision = 'auto'
cam_model = 'resnet50'
cam_layer = 'layer2'
cam_models = 'all'
cam_methods = ['gradcam', 'gradcam++', 'xgradcam', 'eigengradcam', 'layercam']
explain_per_class = 12
perturbation_fill = 'imagenet_mean'
external_data_root = None
external_dataset = 'auto'
class_map = {}
corruption_severities = [1, 3, 5]
generalization_per_class = 12
# %% [markdown]
# ## Setup

# %%
import pandas as pd
from IPython.display import display

from xai_helpers import RunFolder
from xai_helpers.figures import (plot_cam_stability, plot_corruption_curves, plot_corruptions,
                                 plot_reliability)
from xai_helpers.steps import (SEVERITY_LEVELS, chance_levels, corruption_examples, describe_external,
                               external_shift_notes, generalization_findings, imagenet_c_equivalents,
                               load_prepared, run_generalization, severity_summary)
from xai_helpers.notebook import setup_notebook, show_table

params = setup_notebook(globals(), '07 · Generalization')
run = RunFolder(params['run_dir'])

# %% [markdown]
# ## What the corruptions look like
# One test image per class at every severity this run uses (parameters in `SEVERITY_LEVELS`).

# %%
data = load_prepared(params)
sev = max(params['corruption_severities'])
images, views, labels = corruption_examples(data, params, severity=sev, per_class=1)
fig = plot_corruptions(images, views, labels, run=run, title=f'corruptions at severity {sev}')
display(pd.DataFrame(SEVERITY_LEVELS, index=pd.Index(range(1, 6), name='severity')).T)

# %% [markdown]
# These severities are **this project's own scale**, chosen so that a 64 px medical image degrades gradually; they are not ImageNet-C's (Hendrycks & Dietterich 2019), whose severity 5 is much harsher for noise and contrast. Where a corruption is defined the same way in both, the nearest ImageNet-C severity of each of ours (our resolution loss and intensity shift have no counterpart there):

# %%
display(imagenet_c_equivalents())

# %% [markdown]
# ## Every model and fold under every condition
# The test images are the test split (capped at `generalization_per_class` per class), identical for every model, so the rows are paired.

# %%
table = run_generalization(data, params)
print(describe_external(params))
show_table(table.groupby(['model', 'condition', 'severity'], sort=False)[['accuracy', 'f1_macro', 'ece']].mean()
           .rename_axis(index=['model', 'condition', 'severity']).add_suffix(' (mean of folds)'),
           limit=12, source=run.generalization_file)

# %% [markdown]
# ## How the external set differs from the training data
# Before its accuracy is read: per class, each file property of the external images (size, aspect ratio, colour mode, format, JPEG quality, mean intensity) against the training pool's, as in notebook 01's shift audit (Kolmogorov–Smirnov D or Cramér's V, Holm-adjusted; flagged at p < 0.01 with an effect of at least 0.3). Written to `generalization_shift.csv`. Uncropped rectangles from another site, say, are distorted by `resize_mode='squash'`: try `center_crop` or `pad`.

# %%
notes = external_shift_notes(params)
print('\n'.join(notes) if notes else 'No shift of the external set flagged (or no external set).')

# %% [markdown]
# ## Accuracy and F1 against severity
# Severity 0 is the clean test set; the dashed line is what a model that learnt nothing scores on this test split (for accuracy the no-information rate, the majority class's share; for macro-F1 a uniform random guess), named in the legend.

# %%
chance = chance_levels(data.labels[data.test_rows()], len(data.class_names))
for metric in ('accuracy', 'f1_macro'):
    fig = plot_corruption_curves(severity_summary(table, metric), metric, chance=chance, run=run)

# %% [markdown]
# ## Clean, external and calibration
# A model that is as confident on the external set as on its own test set but less accurate there is *over*-confident out of distribution: its ECE grows.
#
# The `clean` rows here are scored on at most `generalization_per_class` test images per class (the same sample every corruption is applied to), not on the whole test split: they differ from notebook 02's test accuracy by that sampling alone.

# %%
summary = table[(table.condition == 'clean') | table.condition.str.startswith('external:')]
display(summary.groupby(['model', 'condition'], sort=False)[['accuracy', 'f1_macro', 'ece', 'mean_confidence']]
       .agg(['mean', 'std']).round(3))
fig = plot_reliability(pd.read_csv(run.generalization_reliability_file), run=run)

# %% [markdown]
# ## Do the explanations stay put?
# Spearman rank correlation between each corrupted image's CAM and its clean CAM (same target class, the clean prediction), for the explained model (`cam_model`). 1 means the map did not move; a method whose maps collapse under mild noise explains the noise as much as the lesion.

# %%
stability = pd.read_csv(run.generalization_cams_file)
if len(stability):
    display(stability.groupby(['condition', 'severity', 'method'])['spearman_mean'].mean().unstack('method').round(3))
    fig = plot_cam_stability(stability, run=run)
else:
    print(f"{params['cam_model']} was not trained in this run: no CAMs to compare")

# %% [markdown]
# ## Do the maps point at the lesion on another hospital's masks?
# When the external set carries expert lesion masks (`masks/<class>/<stem>.png` beside its images), every CNN that notebook 05 explains is scored on them at the same layer: the same four localisation scores, beside the two maps that ignore the image (`centre_prior`, `uniform_random`). All rows, one per model, fold, method, image and metric, are in `generalization_localisation.csv`; below, the mean over images and folds.

# %%
if run.generalization_localisation_file.is_file():
    external_localisation = pd.read_csv(run.generalization_localisation_file)
    display(external_localisation.pivot_table(index=['model', 'method'], columns='metric', values='value',
                                              sort=False).round(3))
else:
    print('the external set has no lesion masks (or there is no external set): nothing to score')

# %% [markdown]
# ## What this run shows
# Computed from this run's `generalization.csv` and `generalization_cams.csv` (exercises 1 and 4 ask about them): the corruption that hurts each CNN most at the highest severity run, and how much each method's maps move under the strongest blur.

# %%
findings = generalization_findings(table, stability)
print('\n'.join(f'- {line}' for line in findings['sentences']) or 'no corruption was run')

# %% [markdown]
# ## Summary
#
# - Accuracy under corruption falls with severity; the slope, not only the clean accuracy, says how robust a model is.
# - An external set is scored only on the classes it shares with the training set, after removing copies of training images.
# - Expected calibration error says whether the model's confidence is still honest on degraded or foreign images.
# - With expert masks, the external set also tests the explanations, against the same baselines as notebook 05.

# %% [markdown]
# ## Exercises
#
# Change a parameter in the parameters cell (or with `--set` in the runner), rerun, and compare. Each answer is folded; try first. Each exercise says what it needs: *(demo)* the demo run (this book's, or a rerun of `make demo` with the change), *(real data)* a dataset from `../shared/data` or downloaded as in [docs/running.md](../docs/running.md), *(JupyterLab)* the live explorer (`make lab`). At least three per notebook need only the demo.
#
# 1. *(demo)* Set `corruption_severities=[1, 2, 3, 4, 5]`. Which corruption hurts the CNNs most at severity 5?
#
#    <details><summary>Answer</summary>
#
#    Look at each CNN's accuracy at severity 5 against its clean accuracy (the severity figure, or `generalization.csv`); the corruption that brings it nearest the dashed line hurts most. It differs between CNNs and datasets: the section "What this run shows" above names, for this run, the corruption that hurts each CNN most at the highest severity it ran.
#
#    </details>
#
# 2. *(real data)* Point `external_data_root` at a folder with different class names and set `class_map`. What happens to a class you do not map?
#
#    <details><summary>Answer</summary>
#
#    It is reported under `unmapped_classes` and not scored; the external accuracy covers the mapped classes only, and the notebook says so.
#
#    </details>
#
# 3. *(demo)* Compare ECE on the clean test split with ECE on the external set. What does a rise mean for a clinician?
#
#    <details><summary>Answer</summary>
#
#    The model's stated confidence is further from its real accuracy on the new site, so confidence thresholds tuned at home do not transfer. ECE is unsigned: the reliability diagram says which way it is off (points below the diagonal: over-confident, a 90 % prediction right less than 90 % of the time; above: under-confident).
#
#    </details>
#
# 4. *(demo)* Which CAM method's maps stay most stable under blur at severity 5 (`generalization_cams.csv`)?
#
#    <details><summary>Answer</summary>
#
#    Compare `spearman_mean` per method at blur severity 5: 1 means the map did not move. Which method is stablest depends on the model and the data, and stability is not correctness: a map that ignored the image altogether (a fixed blob in the centre) would be perfectly stable. "What this run shows" above ranks the methods for this run.
#
#    </details>
