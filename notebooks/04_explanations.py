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
# # 04 · Explanations: five CAM methods side by side
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/xai-helpers/xai-helpers/blob/v0.1.0/notebooks/04_explanations.ipynb)
#
# > **You will learn**
# > - how GradCAM, GradCAM++, XGradCAM, EigenGradCAM and LayerCAM each turn the target layer's activations *A* and gradients *G* into a map
# > - why GradCAM and XGradCAM give the same map at ResNet50's `layer4`, and why EigenGradCAM's sign is arbitrary
# > - how the target layer trades resolution against meaning
# > - how to use the explorer: target class, misclassified images, layer switch, per-image metrics
# >
# > **You need**
# > - notebook [02](02_training.ipynb) run into the same `run_dir` (a trained `cam_model`)
# > - what a convolutional layer's feature map is
# > - 15 s on the demo, measured on a 2-core Intel Xeon with AMX (bf16); 16 s on the same CPU with AVX2 kernels only (fp32, as an AVX2-only CPU runs it); the runner prints the time it expects on your machine before it starts
# > - the [glossary](../docs/glossary.md) for any term used here without a definition
#
# The study explains ResNet50 with GradCAM, GradCAM++, XGradCAM, EigenGradCAM and LayerCAM. All five are functions of the same two tensors of the target layer, its activations *A* and the gradient *G* of the explained class's logit, so `xai_helpers.compute_cams` computes all five from **one forward and one backward pass** (the maps equal pytorch-grad-cam's within 1e-5).
#
# **Image size and target layer.** CAMs are only as fine as the target layer's feature map. ResNet50 downsamples by 32 at `layer4`, 16 at `layer3` and 8 at `layer2`: at the demo's 64 px, `layer4` is 2×2 and `layer3` 4×4, too coarse to localise a lesion, so the demo explains `layer2`, an 8×8 map. At 224 px `layer4` gives 7×7. The cell below prints the size for the parameters of this run.

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
import numpy as np
import pandas as pd
from IPython.display import display

from xai_helpers import RunFolder
from xai_helpers.figures import cam_grid, plot_channel_weights
from xai_helpers.steps import explain_examples, load_prepared
from xai_helpers.widgets import CamExplorer
from xai_helpers.notebook import setup_notebook

params = setup_notebook(globals(), '04 · Explanations')
run = RunFolder(params['run_dir'])

# %% [markdown]
# ## The model and the target layer
# The best checkpoint of fold 0 of the explained model.

# %%
data = load_prepared(params)
examples = explain_examples(data, params, per_class=2, fold=0)
layer, (h, w) = examples.layer, examples.feature_map
print(f"{params['cam_model']} at {params['image_size']} px: target layer {layer!r} gives a {h}x{w} map "
      f"before upsampling")

# %% [markdown]
# ## Five methods, one pass
# A few test images per class; each map explains the predicted class. Lesion masks (synthetic data) are outlined, so you can see at a glance whether a map points at the lesion.
#
# What to notice: on a no-lesion image a map has nothing to point at, so whatever it highlights is what the model uses instead (edges, texture, the border). On the lesion images, look whether every method finds the lesion or only some, and whether that depends on the kind of lesion (the synthetic set has ring and solid lesions: does each method find both?). `examples.labels` says, under each row, the true and the predicted class.

# %%
rows, labels = examples.rows, examples.labels
fig = cam_grid(data.images[rows], examples.maps, labels, data.masks(rows), run=run, name='cam_grid',
               title=f"{params['cam_model']} · {layer}")

# %% [markdown]
# ## The five methods
# Each method is a small function of *A* (the target layer's activations, channels *c* × positions *i, j*) and *G* (the gradient of the explained class's logit with respect to *A*). Every map is then passed through a ReLU, scaled to [0, 1] and upsampled to the image: that part is shared.
#
# | method | the map (before the shared ReLU and scaling) | intuition |
# |---|---|---|
# | GradCAM (Selvaraju et al. 2017) | Σ_c w_c·A_c, with w_c = (1/hw)·Σ_ij G_cij | a channel counts as much as the class score rises, on average, when it rises |
# | GradCAM++ (Chattopadhay et al. 2018) | Σ_c w_c·A_c, with w_c = Σ_ij α_cij·ReLU(G_cij) and α_cij = G_cij² / (2·G_cij² + (Σ_ab A_cab)·G_cij³) | only positive evidence counts, each position weighted, so several instances of a class add up instead of averaging out |
# | XGradCAM (Fu et al. 2020) | Σ_c w_c·A_c, with w_c = Σ_ij (A_cij / Σ_ab A_cab)·G_cij | the gradient averaged where the channel is active: the weights that minimise the violation of their sensitivity and conservation axioms (which hold exactly only for a bias-free ReLU network) |
# | EigenGradCAM (pytorch-grad-cam) | the projection of G⊙A at each position on its first principal component (over positions) | pytorch-grad-cam's variant of EigenCAM (Muhammad & Yeasin 2020, which projects *A* alone) applied to gradient-weighted activations; no paper of its own, no per-channel weight, and the sign is arbitrary (see below) |
# | LayerCAM (Jiang et al. 2021) | Σ_c ReLU(G_cij)·A_cij at each position (i, j) | each position weighted by its own positive gradient: finer maps, which is why it suits shallow layers |
#
# **What GradCAM++ and XGradCAM assume: A ≥ 0.** GradCAM++'s α = G² / (2G² + S·G³) = 1 / (2 + S·G), with S = Σ_ab A_cab, turns negative when S·G < −2 and blows up near −2; XGradCAM's A / Σ A flips sign or explodes when Σ A ≤ 0. With the activations of a ReLU (or anything non-negative) neither can happen. So every target layer this toolkit offers is the output of an activation: ResNet50's blocks and VGG16's ReLUs; for DenseNet121 the ReLU that opens each transition and `features.relu5` (torchvision applies that last ReLU as a function; here it is a module); for EfficientNet-B0 a SiLU (never below −0.28: nearly non-negative, and flagged ⚑ in the localisation table and the explorer). A DenseNet `denseblock` output or an EfficientNet MBConv stage output is signed (a concatenation of convolutions, a BatchNorm projection) and is no longer offered. `xai_helpers.models.LAYER_ACTIVATIONS` lists each layer's bound, and a test checks it on real MRI slices.
#
# The code is as short as the formulas: the cell below prints the functions of `xai_helpers/cams.py` that `compute_cams` calls (each registered under its name; `register_method` adds your own).

# %%
import inspect

from xai_helpers import cams

for method in (cams.gradcam_weights, cams.gradcam, cams.gradcam_plus_plus_weights, cams.xgradcam_weights,
               cams.eigengradcam, cams.layercam):
    print(inspect.getsource(method))

# %% [markdown]
# ### What each method weighs, on one image
# A lesion image from the grid above (the first one the model classifies right), its target layer's channels ordered by GradCAM's weight (the 40 largest in magnitude), each method's weights scaled to its largest. GradCAM and XGradCAM mostly agree in sign and order; GradCAM++ keeps only positive gradients, so its weights are never negative; EigenGradCAM's component has an arbitrary overall sign; LayerCAM has a weight per position, shown averaged.

# %%
demo = examples.lesion_index(data)
weights = examples.channel_weights(demo)
fig = plot_channel_weights(weights, run=run, title=f"{params['cam_model']} · {layer} · "
                           f"{examples.labels[demo].splitlines()[0]}")
display(weights.corr(method='spearman').round(2).rename_axis('Spearman ρ of the weights, all channels'))

# %% [markdown]
# ## Choosing the target layer
# The same image at three depths of the network: each block halves the feature map, so a deeper layer gives a coarser map that is more about the class (its channels combine more of the image), a shallower one a finer map that is more about edges and texture. `cam_layer` picks one; the report's numbers are for that one.

# %%
layer_names = examples.layer_choices()
by_layer = {name: examples.maps_at(params['cam_methods'], layer=name) for name in layer_names}
first = np.repeat(data.images[rows[demo:demo + 1]], len(layer_names), axis=0)
fig = cam_grid(first, {m: np.stack([by_layer[name][m][demo] for name in layer_names]) for m in params['cam_methods']},
               [f'{name}\n{examples.map_size(name)}' for name in layer_names], run=run, name='cam_layers',
               title=f"{params['cam_model']}: the same image at {len(layer_names)} target layers")

# %% [markdown]
# ## Why GradCAM and XGradCAM agree at ResNet50's last block
# After ResNet50's `layer4` come global average pooling and one linear layer, so the gradient of a logit with respect to `layer4`'s output is the same at every position: `G[c, i, j] = w[c] / (h·w)`. GradCAM's weights are the spatial mean of G, i.e. `w[c]/(h·w)`; XGradCAM's are `Σ G·A / Σ A = w[c]/(h·w)` as well. The maps are identical (and need no backward pass at all: the weights are the linear layer's). EfficientNet-B0's `features.8` and DenseNet121's `features.relu5` are followed by the same two operations, so the same holds there. VGG16 (max pooling and three linear layers come after `features.29`) has no such layer, and the two maps differ even at the last block. At earlier layers the gradient varies in space and the methods differ, which is why the demo explains an earlier layer. The cell below compares the two maps at the explained model's deepest layer and at the explained layer.

# %%
diffs = {}
for name in dict.fromkeys((examples.deepest_layer(), layer)):
    m = examples.maps_at(['gradcam', 'xgradcam'], layer=name)
    diffs[name] = float(np.abs(m['gradcam'] - m['xgradcam']).max())
pooled = examples.pooled_linear_layer()
print(f"{params['cam_model']}: " + (f"only pooling and one linear layer after {pooled!r}: the maps agree there"
                                     if pooled else "no layer followed only by pooling and one linear layer"))
display(pd.Series(diffs, name='max |GradCAM - XGradCAM|').rename_axis('layer').to_frame())

# %% [markdown]
# ## EigenGradCAM's sign
# EigenGradCAM projects `G·A` on its first principal component. The sign of a singular vector is arbitrary: pytorch-grad-cam leaves it to LAPACK, and `eigengradcam` here is exactly the library's map (the same float32 numpy SVD, so the same sign). After the ReLU a flipped sign shows the *complement* of the lesion. `eigengradcam_signed` is the documented corrected variant: it applies the library's own correction (`get_2d_projection_with_sign_correction`: flip when |min| > |max|). The study's numbers are for the uncorrected map.

# %%
eig = examples.maps_at(['eigengradcam', 'eigengradcam_signed'])
flipped = [i for i in range(len(rows)) if not np.allclose(eig['eigengradcam'][i], eig['eigengradcam_signed'][i])]
print(f'sign flipped by the correction on {len(flipped)} of {len(rows)} images')
fig = cam_grid(data.images[rows], eig, labels, data.masks(rows), run=run, name='eigengradcam_sign')

# %% [markdown]
# ## Explore
# With `interactive=True` (opening the notebook in JupyterLab) the explorer below lets you pick an image (by index, class, or among misclassified and low-confidence ones), the methods, the target class, the model and layer, the opacity and the colour map. Under the runner (`interactive=False`) the same views are drawn as a static grid, so the executed copy shows them.

# %%
explorer = CamExplorer(data, params)
if params['interactive']:
    display(explorer.widget)
else:
    fig = explorer.static_grid(run=run)

# %% [markdown]
# ## Summary
#
# - All five methods are functions of the same *A* and *G*: GradCAM, GradCAM++ and XGradCAM weight the channels of *A*; LayerCAM weights each position by its own gradient; EigenGradCAM projects G⊙A on a principal component. `xai_helpers/cams.py` has each in 2–5 lines.
# - GradCAM++ and XGradCAM assume non-negative activations: every offered layer is an activation's output (ReLU, or SiLU flagged as nearly non-negative).
# - Each map explains the predicted class unless you choose another target; a map for the wrong class can look just as convincing.
# - Deeper layers give coarser maps (ResNet50 `layer4` is 2×2 at 64 px); `layer2` is 8×8 there.
# - EigenGradCAM's first principal component has no sign of its own: `eigengradcam` keeps the sign the SVD returns (as pytorch-grad-cam does), so on some images its ReLU keeps the background; `eigengradcam_signed` flips a map whose largest magnitude is negative.

# %% [markdown]
# ## Exercises
#
# Change a parameter in the parameters cell (or with `--set` in the runner), rerun, and compare. Each answer is folded; try first. Each exercise says what it needs: *(demo)* the demo run (this book's, or a rerun of `make demo` with the change), *(real data)* a dataset from `../shared/data` or downloaded as in [docs/running.md](../docs/running.md), *(JupyterLab)* the live explorer (`make lab`). At least three per notebook need only the demo.
#
# 1. *(JupyterLab)* In the explorer, pick an image and switch the target from the predicted class to another class. Does the map move?
#
#    <details><summary>Answer</summary>
#
#    For GradCAM-type methods it usually does: the gradients of another class's logit weight the channels differently. If it barely moves, the map shows where the network looks, not why it chose the class.
#
#    </details>
#
# 2. *(demo)* Set `cam_layer='layer3'` and compare with `layer2`. What happens to the maps at 64 px?
#
#    <details><summary>Answer</summary>
#
#    `layer3` is 4×4 at 64 px: the maps become blocky and cannot follow a small lesion; `layer2` (8×8) localises more finely but is less class-specific.
#
#    </details>
#
# 3. *(demo)* Add `eigengradcam_signed` to `cam_methods`. On which images does it differ from `eigengradcam`?
#
#    <details><summary>Answer</summary>
#
#    On the images where the SVD returned the component with the opposite sign: there `eigengradcam` (after its ReLU) shows the background or almost nothing, and the signed map shows the salient region.
#
#    </details>
#
# 4. *(demo)* Set `cam_layer='layer4'` with `cam_model='resnet50'`. Which two methods give identical maps, and why?
#
#    <details><summary>Answer</summary>
#
#    GradCAM and XGradCAM: after `layer4` come global average pooling and one linear layer, so the gradient is the same at every position of a channel and both weights reduce to the channel's mean gradient up to a positive factor.
#
#    </details>
