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
# Everything later in the study rests on this step. Public medical datasets are messy: mixed sizes and colour modes, corrupt files, and duplicated images, sometimes the *same image in the training and the test split*, which silently inflates published accuracies. This notebook
#
# 1. reads the dataset folder in its published layout (or generates the embedded synthetic dataset),
# 2. audits it (files left out and why, what the decoder converted, exact and near duplicates, class balance),
# 3. draws leak-free splits: the published test split stays the test set, and the training pool is divided into `folds` stratified, grouped folds for cross-validation,
# 4. decodes and resizes every image once into a compact cache, so that training never decodes a JPEG again.
#
# It writes `data/splits.csv`, `data/audit.json` and `data/dataset.json` into the run folder.

# %% tags=["parameters"]
# Parameters (papermill injects overrides after this cell; names shared by every notebook,
# documented in the README). Defaults: the 'demo' profile on the embedded synthetic dataset.
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
external_data_root = None
external_dataset = 'auto'
class_map = {}
corruption_severities = [1, 3, 5]
generalization_per_class = 12
# %% [markdown]
# ## Setup
# One cell imports everything, checks the parameters (a wrong dataset name or a missing folder stops here with a message that names the parameter) and records the environment.

# %%
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
