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
# # 05 · How good are the explanations? Confidence increase and friends
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/xai-helpers/xai-helpers/blob/v0.1.0/notebooks/05_explanation_metrics.ipynb)
#
# > **You will learn**
# > - what confidence increase measures, what a "removed" pixel becomes, its readings, and why the mean change is usually negative
# > - deletion and insertion curves, ROAD, and the randomisation sanity check: what each metric rewards and in which direction it is better
# > - how to score maps against expert lesion masks, and why every localisation score must be read against maps that ignore the image
# > - how to compare CAM methods image by image with paired tests, per CNN
# >
# > **You need**
# > - notebook [02](02_training.ipynb) (trained CNNs) and, for the explanations themselves, notebook [04](04_explanations.ipynb)
# > - notebook [03](03_statistics.ipynb) for the paired tests and Holm's correction
# > - 104 s on the demo, measured on a 2-core Intel Xeon with AMX (bf16); 136 s on the same CPU with AVX2 kernels only (fp32, as an AVX2-only CPU runs it); the runner prints the time it expects on your machine before it starts
# > - the [glossary](../docs/glossary.md) for any term used here without a definition
#
# The study rates the CAM methods by **confidence increase**: the change of the explained class's softmax score when the (normalised) input is multiplied by the CAM, `softmax(f(x ⊙ cam))[c] − softmax(f(x))[c]` (pytorch-grad-cam's `CamMultImageConfidenceChange` with a softmax target). Where the map is 0 the normalised input becomes 0, which is **ImageNet's mean colour** (a warm grey), not black and not this dataset's mean. Masking almost always takes away something the model uses, so the score usually **falls**: a map that keeps what the model needs loses less, and the best map is the one whose score falls least (or, rarely, rises).
#
# One metric is not enough to compare methods honestly, so this notebook also reports Chattopadhay et al.'s **average drop %** and **increase in confidence %** (as the paper defines them: the *image* in [0, 1] is multiplied by the map, black where the map is 0, then normalised), Petsiuk et al.'s **deletion** and **insertion** AUC, Rong et al.'s **ROAD** (remove and debias; exactly *p* % of the pixels removed at each percentile, ties broken at random as in their reference code) and Adebayo et al.'s **randomisation sanity check** (every parameterised layer re-initialised, top to bottom; the costly ones on a subsample of images per class, as each costs many forwards per image), and, where lesion masks exist (the synthetic dataset, the Figshare brain tumour set, any dataset with a `masks/` folder), the **pointing game** (a hit when the map's maximum lies in the mask or strictly within a tolerance of it: Zhang et al.'s 15 pixels, which we take at 224 px and scale to the image size), the **energy inside the mask**, the **IoU** at 0.5 and the **mask AUROC**: a check against ground truth, read against two maps that ignore the image.
#
# Each map explains the model's **predicted** class, and every score is the **softmax** probability of that class.
#
# The study explains ResNet50 only (`cam_model`); here every CNN of `cam_models` is explained too, each at a target layer of the same resolution as `cam_model`'s `cam_layer` (at 64 px and `layer2`: 8×8 maps for all four), so that "which architecture's maps point at the lesion" can be asked. The confidence tables and figures below are `cam_model`'s; the localisation table has every CNN.
#
# Writes `xai_per_image.csv` (one row per model, fold, method and image), `xai_metrics.csv` (mean per model, method and true class), `xai_fill_sensitivity.csv` (the ranking under each fill) and adds the CAM method pairs to `stats/paired_tests.csv`.

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
from IPython.display import Markdown, display

from xai_helpers import RunFolder
from xai_helpers.figures import (plot_deletion_insertion, plot_fills, plot_masked_inputs, plot_pvalue_heatmap,
                                 plot_randomisation, plot_randomised_maps, plot_xai_metric)
from xai_helpers.steps import (ALL_METRICS, explain_examples, load_prepared, load_study, localisation_markdown,
                               randomisation_findings,
                               localisation_notes, localisation_table, rate_explanations, run_paired_tests)
from xai_helpers.notebook import setup_notebook

params = setup_notebook(globals(), '05 · Explanation metrics')
run = RunFolder(params['run_dir'])

# %% [markdown]
# ## Explain the test sample with every fold's model
# `explain_per_class` test images per class, the same images for every CNN, fold and method, so that methods can be compared image by image. The paired tests of every metric between the methods (and against the two maps that ignore the image) are computed here, per CNN and per class.

# %%
data = load_prepared(params)
all_cnns = rate_explanations(data, params)
tests = run_paired_tests(params)
print(all_cnns.groupby(['model', 'layer']).agg(folds=('fold', 'nunique'), methods=('method', 'nunique'),
                                               images=('path', 'nunique')).to_string())
# the study's tables and figures: cam_model's
per_image = all_cnns[all_cnns.model == params['cam_model']]
xai = pd.read_csv(run.xai_metrics_file)
xai = xai[xai.model == params['cam_model']]

# %% [markdown]
# ## Confidence increase per method and class
# The study's table (e.g. XGradCAM 0.12 on glioma, GradCAM++ 0.09, LayerCAM 0.08), here for this run: the mean over images and folds.

# %%
display(xai.pivot_table(index='method', columns='class', values='confidence_increase').round(4)
        .rename_axis(index='method', columns='mean confidence increase · class'))
fig = plot_xai_metric(xai, 'confidence_increase', run=run)

# %% [markdown]
# ### What the model sees: x ⊙ map
# Confidence increase feeds the model the input multiplied by the map, pixel by pixel: where the map is 0 the normalised input becomes 0, i.e. ImageNet's mean colour (0.485, 0.456, 0.406), a warm grey. One test image with a lesion (where the dataset has masks: a map has something to point at), explained by fold 0's model, with the explained class's probability before and after (the `perturbation_fill` of this run is printed above the figure):

# %%
example = explain_examples(data, params, per_class=1, fold=0)
demo = example.lesion_index(data)
print('removed pixels become:', params['perturbation_fill'], '· image:', example.labels[demo].replace('\n', ', '))
masked, masked_scores = example.masked_inputs(demo, fill=params['perturbation_fill'])
fig = plot_masked_inputs(data.images[example.rows[demo]], masked, masked_scores, run=run)
display(masked_scores.round(3))

# %% [markdown]
# What to notice: a method whose map keeps the lesion keeps most of the probability (the smallest fall); one whose map is spread over the background shows the model a grey image with the lesion gone.

# %% [markdown]
# ### What a "removed" pixel becomes
# A removed pixel has to become *something*. The study (and pytorch-grad-cam) put 0 of the normalised input there: ImageNet's mean colour. On a dark MRI slice or an X-ray with a black border, that grey is itself a large change, one the model never saw in training, and part of why the mean change is negative. Here is the darkest of the example images with every pixel removed, for each fill this toolkit offers (`perturbation_fill`): `imagenet_mean` (the study's), `black` (Chattopadhay et al.'s `E = L ∘ I`), `dataset_mean` (the explained images' own mean colour) and `blur` (a blurred copy, as insertion starts from):

# %%
dark = example.darkest_index()
fig = plot_fills(example.filled_images(dark), run=run)

# %% [markdown]
# **Does the ranking survive the fill?** Rong et al. (2022) argue that removal metrics measure the fill as much as the map. The same maps and images (`cam_model`'s first fold, on the subsample of the costly metrics), rated by mean confidence increase (higher is better) and deletion AUC (lower is better) under each fill: `ranking` is best first, `kendall_tau` its agreement with the study's fill (1: the same order), and one column per method.

# %%
if run.xai_fill_sensitivity_file.is_file():
    sensitivity = pd.read_csv(run.xai_fill_sensitivity_file)
    display(sensitivity[['fill', 'metric', 'n_images', 'ranking', 'kendall_tau', 'same_order']]
            .round(3).set_index(['metric', 'fill']).sort_index(level=0, sort_remaining=False))
    changed = sensitivity[~sensitivity['same_order']]
    print('the ranking is the same under every fill' if changed.empty else
          'the ranking changes with the fill for: ' + ', '.join(f'{m} ({f})' for m, f in zip(changed.metric, changed.fill)))

# %% [markdown]
# **Readings of confidence increase.** The number behind the study's table can be read as a summary of one perturbation (the input times the map, removed pixels filled with `perturbation_fill`, ImageNet's mean colour by default) in two ways:
#
# 1. the **mean change** of the probability, `p(x ⊙ map) − p(x)` (pytorch-grad-cam's `CamMultImageConfidenceChange`, the `confidence_increase` column), or
# 2. the **share of images whose probability rises** under that same perturbation (pytorch-grad-cam's `IncreaseInConfidence`: `confidence_rising` is 1 or 0 per image; the report's `share_rising`).
#
# Chattopadhay et al. (2018) define their "increase in confidence" on a different perturbation: the *image* in [0, 1] times the map, so removed pixels become **black** (`increase_in_confidence_pct`, and their "average drop" `average_drop_pct`, which counts a rise as 0). The report shows it under its own name (`black_share_rising`).
#
# The mean change is usually **negative**: a trained model is confident on the whole image, and masking takes context away (and shows it grey patches it never saw in training), so most scores fall a little, and they cannot rise above 1. A map that keeps exactly the evidence still loses a bit; a good map loses less. A share of rising images is a count of the exceptions, and is never negative. The published values (0.08 to 0.12) are small and positive; the report shows all three of ours and says which lies nearest.
#
# <details><summary>Why the mean change and the share rising can rank methods differently</summary>
#
# The mean change weighs how much each image loses; the share counts only whether it rose. A method that leaves most images nearly unchanged but collapses a few (a map that is 0 on the lesion of those images) can have a high share and a low mean. That is one reason the study's ranking of methods is fragile; notebook 03's paired tests and the image-level tables below show how fragile.
#
# </details>

# %% [markdown]
# ### Deletion and insertion, one image
# Deletion removes the pixels the map ranks highest first (they become the fill) and watches the probability fall: a map that found the evidence makes it fall fast (a small area under the curve is better). Insertion starts from a blurred copy and puts the highest-ranked pixels back first: a good map makes the probability climb fast (a large area is better). After the ReLU and the scaling to [0, 1], a map is often 0 on half the image: those pixels tie, and they are removed in a random order drawn from `seed` (in raster order the top rows would always go first, and where the evidence lies would decide the area). The same image as above:

# %%
fig = plot_deletion_insertion(example.deletion_insertion_curves(demo, fill=params['perturbation_fill'],
                                                              seed=params['seed']), run=run)

# %% [markdown]
# ## Every metric, overall
# Every metric, what it measures and which direction is better (the localisation columns exist only for images with a lesion mask; `centre_prior` and `uniform_random` have only those). In the table under it, `n` says how many (fold, image) pairs each mean stands on: the costly metrics (deletion/insertion, ROAD, randomisation) use a subsample of images per class, so their means are noisier than the confidence ones:
#
# | metric | what it measures | better when | reference |
# |---|---|---|---|
# | `confidence_increase` | change of the class's softmax score when the normalised input is multiplied by the map (removed pixels: `perturbation_fill`, ImageNet's mean colour by default) | higher | pytorch-grad-cam's `CamMultImageConfidenceChange` |
# | `confidence_rising` | 1 where that same change is positive, else 0; its mean is the share of images whose score rises | higher | pytorch-grad-cam's `IncreaseInConfidence` |
# | `average_drop_pct` | relative drop of the score, `max(0, Y − O)/Y` (a rise counts as 0), when the image in [0, 1] is multiplied by the map (removed pixels: black), in % | lower | Chattopadhay et al. 2018 |
# | `increase_in_confidence_pct` | 100 where the score rises under that black-fill masking, else 0; its mean is the share in % | higher | Chattopadhay et al. 2018 |
# | `deletion_auc` | area under the score as the most relevant pixels are removed first (set to the fill; ties in a seeded random order) | lower | Petsiuk et al. 2018 |
# | `insertion_auc` | area under the score as the most relevant pixels are inserted first into a blurred copy | higher | Petsiuk et al. 2018 |
# | `road_morf` | change of the score (after − before) when the most relevant pixels are removed first and imputed by noisy linear imputation (each removed pixel becomes a weighted mean of its neighbours, plus a little noise, so the model cannot see the removal's shape: the "debiasing"), averaged over the percentiles 10–90 | lower | Rong et al. 2022 |
# | `road_lerf` | the same change, least relevant first | higher | Rong et al. 2022 |
# | `road_combined` | (`road_lerf` − `road_morf`) / 2 | higher | pytorch-grad-cam's `ROADCombined` |
# | `randomisation_spearman` | rank correlation with the trained model's map once every layer is re-initialised | lower | Adebayo et al. 2018 |
# | `pointing_game` | the map's maximum lies in the mask or within 15 px at 224 px (scaled: the localisation table says how many pixels and map cells that is here) | higher | Zhang et al. 2018 |
# | `energy_in_mask` | share of the map's total mass inside the mask | higher | Wang et al. 2020 |
# | `iou` | intersection over union of the map above 0.5 and the mask | higher | |
# | `mask_auroc` | chance that a lesion pixel outscores a background pixel (no threshold) | higher | |

# %%
overall = per_image.groupby('method')[[m for m in ALL_METRICS if m in per_image]].mean()
shown = overall.round(4).T
# how many (fold, image) rows each mean stands on: the costly metrics use a subsample
shown.insert(0, 'n (fold × image)', per_image.groupby('method')[list(shown.index)].count().max().astype(int))
display(shown)

# %% [markdown]
# ## Sanity check: do the maps depend on what the model learnt?
# Adebayo et al. (2018) re-initialise the model block by block from the top and compare each map with the trained model's (Spearman rank correlation). A method whose maps barely change explains the architecture or the image, not the model. The correlation should fall as more of the network is randomised.

# %%
curves = pd.read_csv(run.xai_randomisation_file)
fig = plot_randomisation(curves[curves.model == params['cam_model']], run=run)

# %% [markdown]
# **What this run shows.** A method whose maps keep a rank correlation above 0.5 (our threshold, `RANDOMISATION_FAIL_ABOVE`) with the trained model's once *every* layer is random fails the check: its map follows the image (edges, bright regions) more than the model. Such a method can still lead the confidence and localisation rankings, for the wrong reason: a map that outlines the bright tumour of an MRI slice points at the lesion whatever the model learnt.

# %%
randomisation = randomisation_findings(curves, params['cam_model'])
print('\n'.join(f'- {line}' for line in randomisation['sentences']))

# %% [markdown]
# The maps themselves, for the image above, as the cascade goes from the classifier down to the first convolution. A method that passes the check changes its map as soon as the layers it depends on are random; a map that still shows the same shape at the end reflects the image or the architecture, not what the model learnt.

# %%
fig = plot_randomised_maps(data.images[example.rows[demo]], example.randomised_maps(demo, seed=params['seed']),
                          run=run)

# %% [markdown]
# ## Do the maps point at the lesion?
# Only images with a lesion mask count (no-lesion images have nothing to point at). Lesions often sit near the centre and can cover much of the image, so a map that ignores the image can "point at the lesion" too: every score is shown beside two such maps, `centre_prior` (a centred Gaussian) and `uniform_random` (seeded noise, whose energy in the mask is the mask's area share and whose mask AUROC is 0.5). A CAM method localises only where it beats them; the paired tests below say where it does. `mask_auroc` needs no threshold: the chance that a lesion pixel outscores a background pixel.

#
# The table has every explained CNN: the mean over the masked images with its 95 % bootstrap interval, and the paired test against `centre_prior` (`>`/`<`: significantly above/below it, Holm-adjusted; `ns`: not). Below it, one sentence per CNN; the report (notebook 06) shows the same.

# %%
this_run = load_study(run.root)
localisation = localisation_table(this_run)
if localisation.empty:
    print('no lesion masks in this dataset: localisation metrics are not available')
else:
    display(Markdown(localisation_markdown(localisation)))
    display(Markdown('\n'.join(f'- {note}' for note in localisation_notes(this_run, localisation))))
    scores = ['pointing_game', 'energy_in_mask', 'iou', 'mask_auroc']
    display(per_image.dropna(subset=['pointing_game']).groupby('method')[scores].mean().round(3)
            .rename_axis(f"{params['cam_model']}: method"))
    fig = plot_xai_metric(xai.dropna(subset=['pointing_game']), 'pointing_game', run=run)

# %% [markdown]
# ## Ranking of the methods, with its paired tests
# Methods are ranked by mean confidence increase; the paired tests say which gaps in the ranking are real. The unit is the image: each image's value is averaged over the fold models before the methods are paired, so `n` is the number of distinct images (Holm-corrected across the method pairs; notebook 03 explains the families).

# %%
ranking = overall['confidence_increase'].dropna().sort_values(ascending=False)
display(ranking.rename('mean confidence increase').to_frame())
cams = tests[(tests.comparison == 'cams') & (tests.group == 'all') & (tests.metric == 'confidence_increase')
             & (tests.cam_model == params['cam_model'])]
display(cams[['a', 'b', 'test', 'n', 'mean_a', 'mean_b', 'p_value', 'p_adjusted', 'effect_size']].round(4))
fig = plot_pvalue_heatmap(tests[tests.cam_model == params['cam_model']], 'confidence_increase', 'paired_t',
                         comparison='cams', run=run)

# %% [markdown]
# ## Summary
#
# - Confidence increase multiplies the input by the map; a removed pixel becomes ImageNet's mean colour unless `perturbation_fill` says otherwise, and whether the methods' ranking survives another fill is measured, not assumed.
# - Removing context usually lowers the score, so the mean change is often negative while a (never negative) share of images still rise; Chattopadhay's black-fill readings are a different perturbation.
# - Deletion AUC, ROAD MoRF and the randomisation Spearman are better when lower; insertion AUC, ROAD LeRF, confidence increase and the localisation scores when higher.
# - A centred Gaussian that ignores the image often points at a lesion as well as a CAM does: a method localises only where it beats `centre_prior` significantly.
# - Every CNN is explained at a layer of the same resolution, so their maps are equally coarse; the layers are not equally deep (ResNet50's `layer2` is 2 of 4 stages, VGG16's `features.22` 10 of 13 convolutions), so the comparison is of maps at one resolution, not of equally abstract features.

# %% [markdown]
# ## Exercises
#
# Change a parameter in the parameters cell (or with `--set` in the runner), rerun, and compare. Each answer is folded; try first. Each exercise says what it needs: *(demo)* the demo run (this book's, or a rerun of `make demo` with the change), *(real data)* a dataset from `../shared/data` or downloaded as in [docs/running.md](../docs/running.md), *(JupyterLab)* the live explorer (`make lab`). At least three per notebook need only the demo.
#
# 1. *(demo)* Set `cam_models=['resnet50']` and rerun. What disappears from the localisation table, and how much faster is the notebook?
#
#    <details><summary>Answer</summary>
#
#    Only ResNet50's rows remain in the localisation table. The notebook is faster, but not four times: the other three CNNs only got their maps, confidence and localisation scores; the costly metrics (deletion/insertion, ROAD, randomisation) were ResNet50's alone anyway.
#
#    </details>
#
# 2. *(demo)* Set `explain_per_class=4` and compare the bootstrap intervals of the localisation table with the default 12.
#
#    <details><summary>Answer</summary>
#
#    They are about √3 ≈ 1.7 times wider, and fewer methods are marked significantly above or below the centre prior.
#
#    </details>
#
# 3. *(real data)* Which reading of confidence increase matches the published 0.12 for XGradCAM on glioma: the mean change or the share of images whose score rises?
#
#    <details><summary>Answer</summary>
#
#    The published values are all small and positive, like a share of rising images (under the study's perturbation, `share_rising`, or Chattopadhay et al.'s black fill, `black_share_rising`); the mean change of a masked image is usually negative. The report's `reading` column says which of our three lies nearest for this run.
#
#    </details>
#
# 4. *(demo)* In the randomisation figure, which method's Spearman correlation stays high when the top blocks are re-initialised, and what would that mean?
#
#    <details><summary>Answer</summary>
#
#    A method whose maps barely change when the model is randomised explains the architecture or the image edges, not what the model learnt (Adebayo et al. 2018); the curves should fall towards 0. The cell after the figure names, for this run, the methods that stay above 0.5; a method that fails the check and leads the confidence or localisation ranking leads it for a reason that is not the model's.
#
#    </details>
