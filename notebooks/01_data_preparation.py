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
# # 01 · Data preparation: index, audit, leak-free splits and the image cache
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/xai-helpers/xai-helpers/blob/v0.1.0/notebooks/01_data_preparation.ipynb)
#
# > **You will learn**
# > - why published medical image splits leak (byte copies, near copies and mirrored copies of training images in the test split) and what `leak_policy` does about it
# > - why the test split and the folds are drawn by **patient** (or lesion) rather than by image
# > - what a data audit reports: files left out and why, what the decoder converted, class balance, shortcuts
# > - why every image is decoded and resized once into a cache
# >
# > **You need**
# > - Python and a first look at pandas tables; nothing before this notebook: it is the first
# > - 11 s on the demo, measured on a 2-core Intel Xeon with AMX (bf16); 13 s on the same CPU with AVX2 kernels only (fp32, as an AVX2-only CPU runs it); the runner prints the time it expects on your machine before it starts
# > - the [glossary](../docs/glossary.md) for any term used here without a definition
#
# Everything later in the study rests on this step. Public medical datasets are messy: mixed sizes and colour modes, corrupt files, and duplicated images, sometimes the *same image in the training and the test split*, which silently inflates published accuracies. This notebook
#
# 1. reads the dataset folder in its published layout (or generates the embedded synthetic dataset),
# 2. audits it (files left out and why, what the decoder converted, exact and near duplicates, class balance),
# 3. draws leak-free splits: the published test split stays the test set, and the training pool is divided into `folds` stratified, grouped folds for cross-validation,
# 4. decodes and resizes every image once into a compact cache, so that training never decodes a JPEG again.
#
# It writes `data/splits.csv`, `data/audit.json` and `data/dataset.json` into the run folder.

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
# One cell imports everything, checks the parameters (a wrong dataset name or a missing folder stops here with a message that names the parameter) and records the environment.

# %%
import pandas as pd
from IPython.display import display

from xai_helpers import RunFolder
from xai_helpers.steps import audit_notes, audit_summary, prepare_data
from xai_helpers.figures import plot_audit_metadata, plot_class_counts, plot_samples
from xai_helpers.notebook import setup_notebook

params = setup_notebook(globals(), '01 · Data preparation')
run = RunFolder(params['run_dir'])

# %% [markdown]
# ## Read, audit, split and cache
# With `dataset='synthetic'` the embedded dataset is generated first (seeded, a few seconds, no download). Every file is hashed and decoded once; files that cannot be read are reported and left out, never dropped silently.

# %%
data = prepare_data(params)
print(f"{data.info['title']}\nlayout: {data.info['layout']}   classes: {data.class_names}   "
      f"images used: {len(data.splits)}   cache: {data.images.shape} uint8")

# %% [markdown]
# ## What the audit found
# **Left out** are files that cannot be used, each named with its reason in `audit.json`: missing or a dangling link, empty, not an image, corrupt, too large, or smaller than 8 px a side (a 1×1 "image" blown up to the input size is a flat square, not a sample of its class). **Converted** counts what the decoder changed in images it kept: CMYK, 16-bit, palette or transparent images, the first frame of an animation, colour to grey (or back) for the dataset's colour mode, small images upscaled; look at a few of `conversion_examples` when a count is large. Exact duplicates are byte-identical files; near duplicates have perceptual hashes within a small Hamming distance (the hash and the threshold are named in `audit.json`). Duplicates *across* splits are leaks: by default the training copies of anything that also sits in the test split are dropped.

# %%
with pd.option_context('display.max_colwidth', None, 'display.max_rows', None):  # every value in full
    display(audit_summary(data.audit))

# %% [markdown]
# ## Shortcuts and shifts
# A CNN learns whatever separates the classes. When the file's size, aspect, colour mode, format, JPEG quality or brightness already do (a **shortcut**), a high accuracy may say nothing about the anatomy; when they change between the training pool and the test split of a class (a **shift**), the test accuracy can fall far below validation. Every image's metadata goes to `data/audit_metadata.csv`; `data/audit_shortcuts.csv` tests each feature against the class on the training pool (Kruskal–Wallis with epsilon², chi-square with Cramér's V, Holm-adjusted) and a depth-3 tree predicting the class from the metadata alone (balanced accuracy, permutation p); `data/audit_shift.csv` compares each class's training pool with its test images (Kolmogorov–Smirnov D, chi-square with Cramér's V, Holm-adjusted). A row is flagged at adjusted p < 0.01 with an effect of at least 0.3 (the tree: 0.15 above chance, p < 0.01).

# %%
notes = audit_notes(params)
print('\n'.join(notes) if notes else 'No shortcut or shift flagged.')
fig = plot_audit_metadata(run.audit_metadata_file, run=run)

# %% [markdown]
# ## A look at the images
# A few images per class (lesion masks outlined in red where the dataset has them).

# %%
rows = data.splits.groupby('class', sort=True).head(4).index.to_numpy()
fig = plot_samples(data.images[rows], list(data.splits['class'].iloc[rows]), data.masks(rows), run=run, name='samples')

# %% [markdown]
# ## The splits
# The test split is the same for every fold and every model; the folds of the training pool are stratified by class and grouped (a patient, a lesion, a set of duplicates never straddles two folds). `data/splits.csv` lets anyone repeat the run exactly.

# %%
fig = plot_class_counts(data.splits, run=run)
display(data.splits.groupby(['split', 'fold', 'class']).size().unstack('class'))

# %% [markdown]
# ## Summary
#
# - The audit lists every file it left out, with the reason; nothing disappears silently.
# - Copies of test images in the training pool (byte-identical, re-encoded, resized or mirrored) are found with perceptual hashes and, with `leak_policy='drop_train'`, leave the pool.
# - The test split is fixed; the training pool is cut into `folds` stratified folds, grouped so that one patient (or lesion, or set of look-alike copies) never sits in two parts.
# - Every later notebook reads the same `data/splits.csv` and image cache, so every model sees the same images.

# %% [markdown]
# ## Exercises
#
# Change a parameter in the parameters cell (or with `--set` in the runner), rerun, and compare. Each answer is folded; try first. Each exercise says what it needs: *(demo)* the demo run (this book's, or a rerun of `make demo` with the change), *(real data)* a dataset from `../shared/data` or downloaded as in [docs/running.md](../docs/running.md), *(JupyterLab)* the live explorer (`make lab`). At least three per notebook need only the demo.
#
# 1. *(real data)* Run this notebook on the brain MRI set (`dataset='brain_tumor_mri'`, `data_root='../shared/data/brain_tumor_mri'`) and open `data/audit.json`. How many mirrored-copy groups does it find, and how many cross the Training/Testing split?
#
#    <details><summary>Answer</summary>
#
#    11 mirrored groups (29 images), 2 of them across Training/Testing, on top of 166 exact and 560 near-duplicate groups; with `drop_train`, 272 training images leave the pool ("Expert masks, patients and mirrored copies" in [docs/methods.md](../docs/methods.md)).
#
#    </details>
#
# 2. *(demo)* Rerun with `leak_policy='keep'` (on the demo, then, if you can, on the brain MRI set). What changes in `audit.json`, and why would the test accuracy of notebook 02 be higher?
#
#    <details><summary>Answer</summary>
#
#    On the demo, look at `cross_split_exact_duplicate_groups`, `cross_split_near_duplicate_groups` and `splits.train_images_sharing_a_group_with_test`: where they are 0 (a generator draws each image afresh, so they usually are), there is nothing to drop and nothing changes. On the brain MRI set, under `splits` in `audit.json`, `dropped_train_images` is an empty list while `train_images_sharing_a_group_with_test` still counts the training images that are copies of test images: the training pool keeps them, the models see some test images during training, and test accuracy then measures memory as well as generalization.
#
#    </details>
#
# 3. *(demo)* Set `folds=5`. How do the validation folds change (see `groups_per_part_and_class` in the audit)?
#
#    <details><summary>Answer</summary>
#
#    Each validation fold holds about a fifth of the pool instead of a third, still stratified by class and with no group in two parts; each fit trains on 80 % of the pool instead of 67 %.
#
#    </details>
#
# 4. *(real data)* On the Figshare set (`dataset='brain_tumor_figshare'`), why are look-alike slices of two patients counted (`look_alike_groups_across_patients_not_joined`) but not joined into one group?
#
#    <details><summary>Answer</summary>
#
#    Slices at the same level of different heads hash alike. Joining them chained 521 slices of many patients into one group, which became the whole glioma test split; the patient IDs are the better grouping, so only byte copies join patients.
#
#    </details>
#
# 5. *(demo)* Open `data/audit.json` and find `class_imbalance` (`counts`, `max_over_min`) and `per_split_class`. Is this run's data balanced, and which of notebook 02's metrics would you headline on a set that is not?
#
#    <details><summary>Answer</summary>
#
#    Read the numbers for this run: the synthetic generator makes the same number of images per class, so the demo's `max_over_min` is 1. On an imbalanced set, always answering the majority class already scores its share in accuracy (chest X-ray's test split: 0.62, the dashed line of notebook 02), so balanced accuracy or macro-F1 say more.
#
#    </details>
