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
# # 02 · Training the four CNNs with k-fold cross-validation
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/xai-helpers/xai-helpers/blob/v0.1.0/notebooks/02_training.ipynb)
#
# > **You will learn**
# > - k-fold cross-validation with a fixed test split: one model per fold, every model scored on the same test images
# > - early stopping on the validation macro-F1, and why a minimum number of epochs protects it
# > - why VGG16 gets its own learning rate, batch size and schedule
# > - what the classical baselines (a gradient-boosted tree and a logistic regression on 32×32 grey pixels) tell you about a CNN's score
# >
# > **You need**
# > - notebook [01](01_data_preparation.ipynb) run into the same `run_dir`
# > - the idea of a training loop (loss, epoch, validation)
# > - 7.2 minutes on the demo, measured on a 2-core Intel Xeon with AMX (bf16); 10.0 minutes on the same CPU with AVX2 kernels only (fp32, as an AVX2-only CPU runs it); the runner prints the time it expects on your machine before it starts
# > - the [glossary](../docs/glossary.md) for any term used here without a definition
#
# The study compares ResNet50, DenseNet121, VGG16 and EfficientNet-B0 by accuracy and F1. A single split says little about such differences, so every model is trained on the **same folds**: fold *k*'s model validates on fold *k* (early stopping on macro-F1) and trains on the others, and every fold's model is tested on the **same held-out test split**. The results are therefore paired, which notebook 03 uses.
#
# Writes `metrics.csv` (one row per model and fold), `predictions/<model>_fold<k>.csv` and the checkpoints.

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
from xai_helpers.figures import plot_confusion_matrices, plot_learning_curves, plot_metric_by_model
from xai_helpers.steps import chance_levels, gap_notes, load_prepared, model_overview, train_baselines, train_models, validation_test_gap
from xai_helpers.notebook import setup_notebook

params = setup_notebook(globals(), '02 · Training')
run = RunFolder(params['run_dir'])

# %% [markdown]
# ## The data from notebook 01
# Images come from the uint8 cache; batches are normalised and augmented (flips, small affine transforms, brightness/contrast) on the training device.

# %%
data = load_prepared(params)
print(f"{len(data.splits)} images, classes {data.class_names}, folds {data.folds}, "
      f"{params['image_size']} px")

# %% [markdown]
# ## The models
# Each CNN comes from torchvision with its classification head replaced for our classes. All four downsample by 32, so the image size decides how coarse the last feature map is (at least 2×2 is required). `weights='imagenet'` loads torchvision's ImageNet weights (offline: the error says which file to put where); the demo trains from scratch, since nothing can be downloaded.

# %%
display(model_overview(params['models'], params['image_size']))

# %% [markdown]
# ## Train and test every model on every fold
# Each fit writes its best checkpoint (by validation macro-F1) atomically; an interrupted run picks up where it stopped when this cell is run again.
#
# **In short.** Each model learns from the training folds, and after every epoch it is checked on the held-out fold; the best epoch's weights are kept and training stops when the held-out score stops improving. Augmentation shows the model slightly changed copies of each image (flipped, turned, brighter), so it learns the lesion rather than the exact pixels. Every choice that changes the results is recorded with the checkpoint and shown in the report's protocol table.
#
# <details><summary>The protocol choices, in detail</summary>
#
# Adam with a **cosine learning-rate schedule** over `epochs`; **augmentation** on the training batches (horizontal flips, rotation within ±10°, scaling within ±10 %, shifts within ±5 %, brightness and contrast within ±10 %); **early stopping** on validation macro-F1 after `patience` epochs without improvement, but **never before half of `epochs`** (VGG16 and EfficientNet trained from scratch often sit at chance for a few epochs before they learn); and, before each validation, **BatchNorm recalibration**: the running statistics are re-estimated as a plain average over up to 1,024 training images, a seeded sample stratified by class ("precise BN"), because the running averages of a network trained from scratch keep traces of its first, unstable steps. **VGG16 gets its own settings** (`batch_size` and `lr` accept per-model values): it has no BatchNorm, so from scratch it needs a small learning rate (at 3e-4 its loss jumps in the first steps and it collapses to one class), and at that rate the demo's 6 epochs of 32-image batches (about 40 optimizer steps) are too few to leave chance; batches of 8 give it four times the steps in the same epochs. **Precision** (`precision`): `auto` trains where the hardware runs it fast (see "Speed" in [docs/engineering.md](../docs/engineering.md)), and `metrics.csv` records each fit's path.
#
# </details>

# %%
metrics = train_models(data, params)
display(metrics[['model', 'fold', 'accuracy', 'balanced_accuracy', 'f1_macro', 'roc_auc_ovr', 'best_epoch', 'epochs_run', 'train_seconds']].round(4))

# %% [markdown]
# ## Baselines: what a trivial model gets
# A CNN's accuracy means little on its own. A gradient-boosted tree (`baseline_hgb`) and a logistic regression (`baseline_logreg`) on the cached images downsampled to 32×32 grey pixels are fitted on the same folds and scored on the same test split, seeded. When they do as well as the CNNs, the images carry an easy signal (image size, acquisition, a shortcut the audit of notebook 01 may have flagged). Their rows go to `metrics.csv` and `predictions/`; nothing that loads a checkpoint uses them.

# %%
metrics = train_baselines(data, params)
display(metrics[metrics.model.str.startswith('baseline_')][['model', 'fold', 'accuracy', 'balanced_accuracy', 'f1_macro', 'train_seconds']].round(4))

# %% [markdown]
# ## Results
# Points are folds, bars their mean; the dotted line is the best baseline's mean (grey hatched bars). The dashed line is what a model that learnt nothing scores, and it differs per metric: for **accuracy** the *no-information rate*, the majority class's share of the test split (always answering that class scores it; on an imbalanced split it is well above one over the number of classes), for **macro-F1** the expected score of a uniform random guess.

# %%
chance = chance_levels(data.labels[data.test_rows()], len(data.class_names))
for metric, (level, label) in chance.items():
    print(f'{metric}: {label} = {level:.3f}')
display(metrics.groupby('model', sort=False)[['accuracy', 'f1_macro']].agg(['mean', 'std']).round(4))
fig = plot_metric_by_model(metrics, chance=chance, run=run)

# %% [markdown]
# ## Validation vs test, per class
# Each fold's model is scored on its validation fold (drawn from the training pool) and on the test split. A gap has several possible causes, and the table alone does not say which: the checkpoint was *chosen* on the validation fold, so its validation score is optimistic; per-class recall on one fold of a few dozen images is noisy; and the test split may differ from the training pool (a shift). Only the last is about the data: the audit's shift table (`data/audit_shift.csv`, notebook 01) says which file properties differ, and the notes below quote it for every large gap.

# %%
gap = validation_test_gap(metrics, data.class_names)
display(gap.round(3))
for line in gap_notes(gap, run):
    print(line)

# %% [markdown]
# ## Confusion matrices
# Test predictions of every fold's model, summed over the folds.

# %%
preds = {m: pd.concat([pd.read_csv(run.predictions_file(m, f)) for f in g.fold]) for m, g in metrics.groupby('model', sort=False)}
fig = plot_confusion_matrices(preds, data.class_names, run=run)

# %% [markdown]
# ## Learning curves

# %%
histories = {f'{r.model} fold{r.fold}': pd.read_csv(run.checkpoint_dir(r.model, r.fold) / 'history.csv')
             for r in metrics.itertuples() if r.model in params['models']}
fig = plot_learning_curves(histories, run=run)

# %% [markdown]
# ## Summary
#
# - Every (model, fold) fit has its own seed, data rows and checkpoint folder; rerunning the notebook trains only what is missing.
# - The fold's best checkpoint (highest validation macro-F1) scores the fixed test split; `metrics.csv` has one row per model and fold.
# - The baselines on 32×32 grey pixels are the bar a CNN must clear: a CNN that does not beat them has learnt no more than coarse intensity statistics.
# - The fold-to-fold spread is part of the result: report the mean and the standard deviation, never one lucky fold.

# %% [markdown]
# ## Exercises
#
# Change a parameter in the parameters cell (or with `--set` in the runner), rerun, and compare. Each answer is folded; try first. Each exercise says what it needs: *(demo)* the demo run (this book's, or a rerun of `make demo` with the change), *(real data)* a dataset from `../shared/data` or downloaded as in [docs/running.md](../docs/running.md), *(JupyterLab)* the live explorer (`make lab`). At least three per notebook need only the demo.
#
# 1. *(demo)* Set `epochs=2` and rerun notebooks 01–02 into a new `run_dir`. How do the mean test accuracies and their spread over folds change?
#
#    <details><summary>Answer</summary>
#
#    They fall and spread more: two epochs are too few for the CNNs trained from scratch, and early stopping cannot help (it never stops before half of `epochs`).
#
#    </details>
#
# 2. *(demo)* Open `checkpoints/vgg16_fold0/history.csv`. At which epoch was the validation macro-F1 best, and what did the later epochs do?
#
#    <details><summary>Answer</summary>
#
#    The best epoch is the one saved as `best.pt`; later epochs either did not improve it (and count towards `patience`) or the run reached `epochs`. The numbers depend on your CPU's precision path, so read them from your run.
#
#    </details>
#
# 3. *(demo)* Compare each CNN with `baseline_hgb` in `metrics.csv`. On which dataset would you distrust a CNN whose accuracy is within 0.02 of the baseline?
#
#    <details><summary>Answer</summary>
#
#    On any: a CNN that barely beats 32×32 grey pixels may be using intensity or size shortcuts. Notebook 03 tests the gap image by image; notebook 01's shortcut audit says which file properties predict the class.
#
#    </details>
#
# 4. *(demo)* Set `class_weighted=True`. Which per-class recall in `metrics.csv` should rise, and what does it cost?
#
#    <details><summary>Answer</summary>
#
#    The recall of the smaller classes tends to rise and that of the largest to fall; overall accuracy may drop a little while balanced accuracy rises.
#
#    </details>
