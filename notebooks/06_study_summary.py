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
# # 06 · The study across datasets, next to the published numbers
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/xai-helpers/xai-helpers/blob/v0.1.0/notebooks/06_study_summary.ipynb)
#
# > **You will learn**
# > - how to read the study report: protocol, performance with marks, confidence increase, localisation, the published numbers and why ours differ
# > - why a reproduction differs from published numbers (weights, image size, splits, test sets) and how to tell which difference matters
# >
# > **You need**
# > - notebooks [01](01_data_preparation.ipynb)–[05](05_explanation_metrics.ipynb) and [07](07_generalization.ipynb) run (for one dataset, or one run folder per dataset with the `paper` profiles)
# > - 7 s on the demo, measured on a 2-core Intel Xeon with AMX (bf16); 10 s on the same CPU with AVX2 kernels only (fp32, as an AVX2-only CPU runs it); the runner prints the time it expects on your machine before it starts
# > - the [glossary](../docs/glossary.md) for any term used here without a definition
#
# The study reports accuracy and F1 of four CNNs on three datasets and the confidence increase of five CAM methods, e.g. ResNet50 at **86.31 %** accuracy on skin cancer, and on glioma **XGradCAM 0.12**, **GradCAM++ 0.09**, **LayerCAM 0.08**. This notebook gathers every dataset run of a study folder (the `paper` profiles write `runs/paper/<dataset>/`; a single run folder such as `runs/demo` counts as one dataset) into one set of tables, puts the published numbers beside ours, and says why they differ.
#
# **Why they can differ at all.** A reproduction changes more than the code: pretrained weights or not, the image size, the splits (the published Kaggle splits hold duplicates across train and test, which notebook 01 removes), and whether a number is one model's or a mean over folds. The report lists each of these for every dataset, so a gap can be read, not guessed at.
#
# Writes `report.md` and the `study_*` figures into the study folder (`run_dir`).

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
from xai_helpers.figures import plot_confidence_heatmaps, plot_study_metric
from xai_helpers.steps import (confidence_table, confidence_wide, load_study, performance_table, protocol_table,
                               published_comparison, write_report)
from xai_helpers.notebook import setup_notebook

params = setup_notebook(globals(), '06 · Study summary')
run = RunFolder(params['run_dir'])

# %% [markdown]
# ## Every dataset run in the study folder
# How each was run: image size, the weights actually used (`auto` falls back to training from scratch when ImageNet weights cannot be loaded), folds, caps, the duplicates the audit removed.

# %%
runs = load_study(params['run_dir'])
print(f"{len(runs)} dataset run(s): {', '.join(r.dataset for r in runs)}")
display(protocol_table(runs).set_index('dataset').T)

# %% [markdown]
# ## Accuracy and F1 per CNN and dataset
# Mean ± standard deviation over the fold models, each tested on the same held-out test split; the mark compares each model with the dataset's best one by the paired randomisation test over the test images (every fold model's results averaged per image), Holm-adjusted, and the `(corrected_t)` columns by the corrected resampled t-test over the folds (notebook 03 explains both, with the same table for one dataset).

# %%
display(performance_table(runs))
metrics = pd.concat([r.metrics for r in runs], ignore_index=True)
fig = plot_study_metric(metrics, 'accuracy', run=run)
fig = plot_study_metric(metrics, 'f1_macro', run=run)

# %% [markdown]
# ## Confidence increase per explained CNN, CAM method and class
# One row per dataset, CNN and method (notebook 05 explains every CNN of `cam_models`, each at a layer of the same resolution; the study explains ResNet50 only). Mean over the explained test images of every fold; the mark compares each method with the class's best method of the same CNN on the same images (paired t-test, Holm-adjusted).

# %%
conf = confidence_table(runs)
if len(conf):
    display(confidence_wide(conf))
    fig = plot_confidence_heatmaps(conf, run=run)
else:
    print('no xai_metrics.csv yet: run notebook 05 first')

# %% [markdown]
# ## Next to the published numbers
# Only the published numbers whose dataset is in this study folder get a value under `ours`.

# %%
display(published_comparison(runs).round(4))

# %% [markdown]
# ## The report
# `report.md` holds all of the above, the generalization summary of notebook 07 where it has run, and the reasons for each difference, per dataset. Its sections (open the file for the rest, or read [the report](../report.md): in the book it is a page, after this notebook):

# %%
path = write_report(params['run_dir'], runs)
print(path)
print('\n'.join(line for line in path.read_text().splitlines() if line.startswith('## ')))

# %% [markdown]
# ## Summary
#
# - The report is generated from the run folders: every number in it can be traced to a csv.
# - The published numbers stand beside ours with intervals; `computed_on` says which dataset each of ours comes from.
# - "Why the numbers differ" lists every protocol difference per dataset, from weights to duplicates removed.

# %% [markdown]
# ## Exercises
#
# Change a parameter in the parameters cell (or with `--set` in the runner), rerun, and compare. Each answer is folded; try first. Each exercise says what it needs: *(demo)* the demo run (this book's, or a rerun of `make demo` with the change), *(real data)* a dataset from `../shared/data` or downloaded as in [docs/running.md](../docs/running.md), *(JupyterLab)* the live explorer (`make lab`). At least three per notebook need only the demo.
#
# 1. *(demo)* Open `report.md` and find the protocol row `test split`. Where did your test images come from?
#
#    <details><summary>Answer</summary>
#
#    On the synthetic demo, the dataset's own test split; on the Figshare set, drawn by patient (or the published fold 5 when `cvind.mat` is present).
#
#    </details>
#
# 2. *(real data)* In "Next to the published numbers", which reading of confidence increase is nearer to the published values, and is the difference inside our interval?
#
#    <details><summary>Answer</summary>
#
#    Read the `reading` and `difference_ci` columns: an interval that contains 0 means the published value is compatible with ours.
#
#    </details>
#
# 3. *(real data)* Run the `paper_cpu` profile on a second dataset into the same study folder and rerun this notebook. What changes in the report?
#
#    <details><summary>Answer</summary>
#
#    Every table gets rows for the second dataset; the performance marks are computed within each dataset, never across.
#
#    </details>
#
# 4. *(demo)* In "Do the maps point at the lesion?", what does a `<` mark in a method's cell mean, and which methods of the explained CNN beat `centre_prior` in this run?
#
#    <details><summary>Answer</summary>
#
#    `<` means the method's mean is significantly *below* the centre prior's (the Holm-adjusted paired t-test over images); `>` above, `ns` not different. The sentence under the table names, per CNN, the methods above and below the prior for this run; a method localises only where it is above.
#
#    </details>
#
# 5. *(demo)* Why does "Next to the published numbers" give three numbers of ours beside each published confidence increase?
#
#    <details><summary>Answer</summary>
#
#    The study does not say which formula it used. `ours` is the mean change of the class score when the input is multiplied by the map (removed pixels become ImageNet's mean colour), `share_rising` the share of images whose score rises under that same perturbation, and `black_share_rising` the share under Chattopadhay et al.'s black fill; `reading` says which lies nearest. On the demo the published rows have no counterpart (no glioma), so read the explanation above the table.
#
#    </details>
