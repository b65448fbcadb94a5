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
# # 03 · Are the differences between models significant?
#
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/xai-helpers/xai-helpers/blob/v0.1.0/notebooks/03_statistics.ipynb)
#
# > **You will learn**
# > - which paired test fits which pairing (the same test images, the same folds, the same explained images)
# > - why the image, not the fold, carries the evidence, and why a plain t-test over folds gives p-values that are too small
# > - what Holm's correction does across a family of comparisons
# > - how to read an effect size (Cohen's d_z) and a bootstrap interval beside a p-value
# >
# > **You need**
# > - notebooks [01](01_data_preparation.ipynb) and [02](02_training.ipynb) run into the same `run_dir`
# > - what a p-value is; "The statistics" in [docs/methods.md](../docs/methods.md) says what each test assumes
# > - 11 s on the demo, measured on a 2-core Intel Xeon with AMX (bf16); 13 s on the same CPU with AVX2 kernels only (fp32, as an AVX2-only CPU runs it); the runner prints the time it expects on your machine before it starts
# > - the [glossary](../docs/glossary.md) for any term used here without a definition
#
# **The idea in five lines.** Two models scored on the same test images are *paired*: each image is a small experiment that both models took. The question is whether the difference we see would survive another set of images. Resampling the images we have (the bootstrap) shows how much the difference moves from one possible test set to the next; if its interval stays clear of 0, the difference is probably real. With only a few images the interval is wide and almost nothing is significant; with many it narrows. The tests below are careful versions of that idea, one for each way the results are paired.
#
# The worked example further down does it by hand on 10 images; the full protocol, with what each test assumes, is folded here:
#
# <details><summary>Which test for which pairing, and what each assumes</summary>
#
#
# * *Same test images, every fold model* (`predictions/`): the **image-level paired randomisation test** (`randomisation_images`, the headline mark). The unit that carries the evidence is the test image: a new test set would change the images, not the folds. For each image its correctness is averaged over the fold models (the share of folds that got it right), and the statistic is the difference of the two models' accuracy (and macro-F1, averaged over the fold models). If the two models were interchangeable, swapping their predictions on any image would be as likely as not: the p-value is the share of such swap patterns whose difference is at least as far from 0 as the observed one (exact for accuracy and for up to 16 differing images, else 49,999 random patterns, `p = (1 + #)/(B + 1)`, never 0). With one fold it is the exact McNemar test; two models that differ on 5 of 100 images, all one way, get p = 0.0625. The interval of the difference comes from resampling the images in pairs (bootstrap, 49,999 resamples). It assumes the test images are independent draws.
# * *Same folds* (`metrics.csv`): the **paired t-test** (as in the study) assumes the fold differences are independent and roughly normal. They are not independent: the training sets of the folds overlap, so its p-values are too small. The **Nadeau–Bengio corrected resampled t-test** replaces the `1/k` in the variance of the mean difference by `1/k + n_val/n_train` (the held-out fold against the training folds, about `1/k + 1/(k−1)`; Bouckaert & Frank 2004): a heuristic, borrowed from Nadeau & Bengio (2003) for overlapping training sets; their derivation does not cover what happens here, where every fold is also scored on one shared test split. The **Wilcoxon signed-rank** test drops normality and assumes only symmetric differences, but with *n* folds its two-sided p-value cannot go below `2/2^n` (0.25 for three folds; the p is exact, by enumerating all `2^n` sign flips, up to 13 non-zero differences, and scipy's `wilcoxon` above); its interval (Hollander & Wolfe's, from the Walsh averages) bounds the **pseudo-median** of the differences, not the mean that the `difference` column shows, and cannot reach 95 % either: `ci_level` says what it reaches (75 % with three folds). **Every fold model is scored on the same test split**, so these fold-level tests are *conditional on that test set*: they see how training varies, not how the test images do. With three folds they have almost no power: a 55-point gap can come out `ns`. That is why the summary table's mark is the image-level randomisation test, with the corrected t beside it.
# * *Same test images, one fold* (`predictions/`): **McNemar's test** compares two models' correct/incorrect outcomes image by image (exact binomial for fewer than 25 disagreements, chi-square with continuity correction otherwise), and the randomisation test of each fold (`randomisation_accuracy`, `randomisation_f1_macro`) gives a p and a bootstrap interval of the accuracy and F1 differences.
# * *Same explained images* (`xai_per_image.csv`, after notebook 05): paired t and Wilcoxon between CAM methods, with **one value per image**: every fold's model explains the same images, so each image's metric is averaged over the fold models first, and `n` is the number of distinct images. Each explained model and layer (`cam_model`, `cam_layer`) is tested and corrected on its own.
#
# **Which family Holm corrects over** (`holm_family`): one comparison (models, CNNs against the best baseline, or CAM methods), one group (all images, one fold, or one true class), one metric and one test family, across every pair compared there. Both McNemar variants (exact and chi-square, chosen per pair) are one family; each other test is its own. The CNN-vs-baseline pairs (`comparison = cnn_vs_baseline`) are a family of their own, so adding the baselines leaves the CNN-vs-CNN p-values unchanged.
#
# **How to read the table**: `p_value` is the raw p, `p_adjusted` the Holm-corrected one in its `holm_family` (use this one), `effect_size` (its kind in `effect size kind`) is Cohen's d_z for t-tests (the mean difference in units of its standard deviation: it does not grow with the number of pairs, while the p-value shrinks as they grow; as a rough guide 0.2 is small, 0.5 medium, 0.8 large, but with 3 folds whose differences nearly agree the standard deviation is tiny and d_z can reach 40 without the effect being large: read the difference beside it), the rank-biserial correlation for Wilcoxon and the accuracy (or F1) difference for McNemar and the randomisation tests; `ci_low`/`ci_high` bound the difference at the level `ci_level`; `normality_p` is a Shapiro–Wilk check of the differences. Identical results give p = 1; a single fold, or fold differences that are all equal (zero variance), give 'not testable' (p NaN, mark `n/a`), never p = 0.
#
# </details>

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
from IPython.display import display

from xai_helpers import RunFolder
from xai_helpers.figures import plot_bootstrap_example, plot_paired_lines, plot_pvalue_heatmap
from xai_helpers.steps import bootstrap_example, readable_tests, run_paired_tests, summary_table_for_run
from xai_helpers.notebook import setup_notebook, show_table

params = setup_notebook(globals(), '03 · Statistics')
run = RunFolder(params['run_dir'])

# %% [markdown]
# ## A worked example: the bootstrap by hand
# Ten test images drawn at random, the best and the worst CNN (by mean test accuracy over the folds) compared on fold 0's predictions for each (1 = right, 0 = wrong), and the difference. The bootstrap draws 10 images *with replacement* from these 10, 2,000 times, and recomputes the accuracy difference each time; the middle 95 % of those values is the interval. The same on every test image is on the right.

# %%
example = bootstrap_example(params, n_images=10)
if example is None:
    print('only one CNN in this run: nothing to compare')
else:
    display(example.images)
    fig = plot_bootstrap_example(example, run=run)
    print(f"10 images: difference {example.small['observed']:+.2f}, 95 % interval "
          f"[{example.small['ci_low']:+.2f}, {example.small['ci_high']:+.2f}]; all {example.n_test}: "
          f"{example.full['observed']:+.2f} [{example.full['ci_low']:+.2f}, {example.full['ci_high']:+.2f}]")

# %% [markdown]
# **Read the 10-image interval with care.** A percentile bootstrap assumes the sample stands for the population; 10 images do that poorly, and a 10-image "95 %" interval covers the true difference less often than 95 % of the time (simulated with two models right on 80 % and 60 % of the images: 94 % coverage on 10 images, 95 % on 100; with fewer images or rarer disagreements it gets worse, and the interval moves in steps of 0.1). The interval on every test image is the one to trust; the small one shows why more images are needed, not how big the difference is.

# %% [markdown]
# ## Run every paired test
# Results go to `stats/paired_tests.csv`, with every column (the raw p, the statistic, the Holm family, notes); the tables here show the ones to read: the mean difference `a − b` with its interval, the Holm-adjusted p and the effect size.

# %%
metrics = run.read_metrics()
tests = run_paired_tests(params)
between_cnns = tests[(tests.comparison == 'models') & (tests.group == 'all')]
show_table(readable_tests(between_cnns), limit=len(between_cnns), source=run.paired_tests_file)

# %% [markdown]
# ## Did the CNNs beat a trivial model?
# Notebook 02 also fitted classical baselines on 32×32 grey pixels. Each CNN is compared with the best of them (by mean test accuracy) by the same tests; a CNN that is not above it learnt no more than a pixel classifier, whatever its explanations look like.

# %%
against_baseline = tests[(tests.comparison == 'cnn_vs_baseline') & (tests.group == 'all')]
show_table(readable_tests(against_baseline), limit=len(against_baseline), source=run.paired_tests_file)

# %% [markdown]
# ## The paper-style table
# Mean ± standard deviation over folds; the mark compares each CNN with the best one by the image-level randomisation test, Holm-adjusted (`*` p < 0.05, `**` p < 0.01, `***` p < 0.001, `ns` not significant). The columns `(corrected_t)` give the corrected resampled t-test's mark for the same pair; `kind` tells CNNs from baselines, and `vs <baseline>` says whether each CNN's mean accuracy is above the best baseline's.

# %%
table = summary_table_for_run(params, tests, ('accuracy', 'f1_macro'))
display(table)

# %% [markdown]
# ## Figures
# Adjusted p-values per pair (image-level randomisation test, then the corrected t), and the fold-wise values joined per fold.

# %%
for metric in ('accuracy', 'f1_macro'):
    plot_pvalue_heatmap(tests, metric, 'randomisation_images', run=run)
    plot_pvalue_heatmap(tests, metric, 'corrected_t', run=run)
    plot_paired_lines(metrics, metric, run=run)

# %% [markdown]
# ## Same test images, one fold: McNemar and the randomisation test
# One row per fold and model pair.

# %%
show_table(readable_tests(tests[tests.group.str.startswith('fold')]), limit=24, source=run.paired_tests_file)

# %% [markdown]
# ## What the data can and cannot show
# A non-significant result is *not* evidence that two models are equally good: look at the interval of the difference. A significant plain t-test that the corrected test does not confirm is most likely an artefact of overlapping training sets; a significant image-level test that the corrected t does not confirm says the gap holds on these test images for these fold models, while three folds are too few to say how much it varies with the training data.

# %% [markdown]
# ## Summary
#
# - The headline mark compares two models on the same test images (each image averaged over the fold models), with an exact or Monte-Carlo randomisation test.
# - Fold-level tests are conditional on one test split and have little power with 3–5 folds; the corrected resampled t-test (Nadeau–Bengio) is shown beside them.
# - Holm's correction keeps the chance of any false discovery within a family at most 5 %; each family is one comparison kind, metric and test.
# - A tiny p with a tiny effect is not a finding; a large effect with few images is not one either. Read p, effect and interval together.

# %% [markdown]
# ## Exercises
#
# Change a parameter in the parameters cell (or with `--set` in the runner), rerun, and compare. Each answer is folded; try first. Each exercise says what it needs: *(demo)* the demo run (this book's, or a rerun of `make demo` with the change), *(real data)* a dataset from `../shared/data` or downloaded as in [docs/running.md](../docs/running.md), *(JupyterLab)* the live explorer (`make lab`). At least three per notebook need only the demo.
#
# 1. *(demo)* Why can a Wilcoxon signed-rank test over 3 folds never give p below 0.25?
#
#    <details><summary>Answer</summary>
#
#    Its exact null distribution flips the signs of the 3 differences: 2³ = 8 equally likely patterns. The most extreme result (all three with the same sign) has two-sided probability 2/8 = 0.25.
#
#    </details>
#
# 2. *(demo)* Find a pair whose `p_value` is below 0.05 but whose `p_adjusted` is not. Why did Holm move it?
#
#    <details><summary>Answer</summary>
#
#    Holm multiplies the smallest of m p-values by m, the next by m − 1, and so on (keeping the order): with six model pairs, a raw p of 0.02 that is the third smallest becomes at least 0.02 × 4 = 0.08.
#
#    </details>
#
# 3. *(demo)* Rerun notebooks 01–03 into a new `run_dir` with `synthetic_per_class=40` and a new `data_root` (fewer test images). What happens to the bootstrap intervals and the marks?
#
#    <details><summary>Answer</summary>
#
#    The intervals widen roughly with 1/√n, and gaps that were marked `*` may become `ns`: the evidence is in the number of test images.
#
#    </details>
#
# 4. *(demo)* In `stats/paired_tests.csv`, compare `randomisation_images` with `corrected_t` for the same pair. Which one is the smaller p, and why?
#
#    <details><summary>Answer</summary>
#
#    Usually the image-level test: it uses every test image as a unit, while the corrected t-test sees only the 3 fold scores and inflates their variance for the overlap of the training sets.
#
#    </details>
