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
# > **You will learn**
# > - which paired test fits which pairing (the same test images, the same folds, the same explained images)
# > - why the image, not the fold, carries the evidence, and why a plain t-test over folds gives p-values that are too small
# > - what Holm's correction does across a family of comparisons
# > - how to read an effect size (Cohen's d_z) and a bootstrap interval beside a p-value
# >
# > **You need**
# > - notebooks [01](01_data_preparation.ipynb) and [02](02_training.ipynb) run into the same `run_dir`
# > - what a p-value is; the README's "The statistics" says what each test assumes
# > - 12 s on the demo, measured on a 2-core Intel Xeon with AMX (bf16)
# > - the [glossary](../docs/glossary.md) for any term used here without a definition
#
# The study uses paired t-tests. With a handful of folds, and six model pairs, a plain t-test misleads, so this notebook runs the right test for each pairing, corrects for multiple comparisons and reports effect sizes and intervals.
#
# **Which test for which pairing, and what each assumes**
#
# * *Same test images, every fold model* (`predictions/`): the **image-level paired randomisation test** (`randomisation_images`, the headline mark). The unit that carries the evidence is the test image: a new test set would change the images, not the folds. For each image its correctness is averaged over the fold models (the share of folds that got it right), and the statistic is the difference of the two models' accuracy (and macro-F1, averaged over the fold models). If the two models were interchangeable, swapping their predictions on any image would be as likely as not: the p-value is the share of such swap patterns whose difference is at least as far from 0 as the observed one (exact for accuracy and for up to 16 differing images, else 49,999 random patterns, `p = (1 + #)/(B + 1)`, never 0). With one fold it is the exact McNemar test; two models that differ on 5 of 100 images, all one way, get p = 0.0625. The interval of the difference comes from resampling the images in pairs (bootstrap, 49,999 resamples). It assumes the test images are independent draws.
# * *Same folds* (`metrics.csv`): the **paired t-test** (as in the study) assumes the fold differences are independent and roughly normal. They are not independent: the training sets of the folds overlap, so its p-values are too small. The **Nadeau–Bengio corrected resampled t-test** inflates the variance by `1/k + n_val/n_train` (the held-out fold against the training folds, about `1/k + 1/(k−1)`; Bouckaert & Frank 2004) to account for that. The **Wilcoxon signed-rank** test drops normality and assumes only symmetric differences, but with *n* folds its two-sided p-value cannot go below `2/2^n` (0.25 for three folds); its interval (Hollander & Wolfe's, from the Walsh averages) cannot reach 95 % either, and `ci_level` says what it reaches (75 % with three folds). **Every fold model is scored on the same test split**, so these fold-level tests are *conditional on that test set*: they see how training varies, not how the test images do. With three folds they have almost no power: a 55-point gap can come out `ns`. That is why the summary table's mark is the image-level randomisation test, with the corrected t beside it.
# * *Same test images, one fold* (`predictions/`): **McNemar's test** compares two models' correct/incorrect outcomes image by image (exact binomial for fewer than 25 disagreements, chi-square with continuity correction otherwise), and the randomisation test of each fold (`randomisation_accuracy`, `randomisation_f1_macro`) gives a p and a bootstrap interval of the accuracy and F1 differences.
# * *Same explained images* (`xai_per_image.csv`, after notebook 05): paired t and Wilcoxon between CAM methods, with **one value per image**: every fold's model explains the same images, so each image's metric is averaged over the fold models first, and `n` is the number of distinct images. Each explained model and layer (`cam_model`, `cam_layer`) is tested and corrected on its own.
#
# **Which family Holm corrects over** (`holm_family`): one comparison (models, CNNs against the best baseline, or CAM methods), one group (all images, one fold, or one true class), one metric and one test family, across every pair compared there. Both McNemar variants (exact and chi-square, chosen per pair) are one family; each other test is its own. The CNN-vs-baseline pairs (`comparison = cnn_vs_baseline`) are a family of their own, so adding the baselines leaves the CNN-vs-CNN p-values unchanged.
#
# **How to read the table**: `p_value` is the raw p, `p_adjusted` the Holm-corrected one in its `holm_family` (use this one), `effect_size` is Cohen's d_z for t-tests (the mean difference in units of its standard deviation), the rank-biserial correlation for Wilcoxon and the accuracy (or F1) difference for McNemar and the randomisation tests; `ci_low`/`ci_high` bound the difference at the level `ci_level`; `normality_p` is a Shapiro–Wilk check of the differences. Identical results give p = 1; a single fold, or fold differences that are all equal (zero variance), give 'not testable' (p NaN, mark `n/a`), never p = 0.

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

# %%
from IPython.display import display

from xai_helpers import RunFolder
from xai_helpers.figures import plot_paired_lines, plot_pvalue_heatmap
from xai_helpers.steps import run_paired_tests, summary_table_for_run
from xai_helpers.notebook import setup_notebook

params = setup_notebook(globals(), '03 · Statistics')
run = RunFolder(params['run_dir'])

# %% [markdown]
# ## Run every paired test
# Results go to `stats/paired_tests.csv`.

# %%
metrics = run.read_metrics()
tests = run_paired_tests(params)
cols = ['comparison', 'group', 'a', 'b', 'metric', 'test', 'n', 'statistic', 'p_value', 'p_adjusted',
        'holm_family', 'effect_size', 'ci_low', 'ci_high', 'ci_level', 'note']
display(tests[(tests.comparison == 'models') & (tests.group == 'all')][cols].round(4))

# %% [markdown]
# ## Did the CNNs beat a trivial model?
# Notebook 02 also fitted classical baselines on 32×32 grey pixels. Each CNN is compared with the best of them (by mean test accuracy) by the same tests; a CNN that is not above it learnt no more than a pixel classifier, whatever its explanations look like.

# %%
display(tests[(tests.comparison == 'cnn_vs_baseline') & (tests.group == 'all')][cols].round(4))

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
display(tests[tests.group.str.startswith('fold')][cols].round(4).head(24))

# %% [markdown]
# ## What the data can and cannot show
# A non-significant result is *not* evidence that two models are equally good: look at the interval of the difference. A significant plain t-test that the corrected test does not confirm is most likely an artefact of overlapping training sets; a significant image-level test that the corrected t does not confirm says the gap holds on these test images for these fold models, while three folds are too few to say how much it varies with the training data.

# %% [markdown]
# ## Summary
#
# - The headline mark compares two models on the same test images (each image averaged over the fold models), with an exact or Monte-Carlo randomisation test.
# - Fold-level tests are conditional on one test split and have little power with 3–5 folds; the corrected resampled t-test (Nadeau–Bengio) is shown beside them.
# - Holm's correction keeps the chance of any false discovery within a family at 5 %; each family is one comparison kind, metric and test.
# - A tiny p with a tiny effect is not a finding; a large effect with few images is not one either. Read p, effect and interval together.

# %% [markdown]
# ## Exercises
#
# Change a parameter in the parameters cell (or with `--set` in the runner), rerun, and compare. Each answer is folded; try first.
#
# 1. Why can a Wilcoxon signed-rank test over 3 folds never give p below 0.25?
#
#    <details><summary>Answer</summary>
#
#    Its exact null distribution flips the signs of the 3 differences: 2³ = 8 equally likely patterns. The most extreme result (all three with the same sign) has two-sided probability 2/8 = 0.25.
#
#    </details>
#
# 2. Find a pair whose `p_value` is below 0.05 but whose `p_adjusted` is not. Why did Holm move it?
#
#    <details><summary>Answer</summary>
#
#    Holm multiplies the smallest of m p-values by m, the next by m − 1, and so on (keeping the order): with six model pairs, a raw p of 0.02 that is the third smallest becomes at least 0.02 × 4 = 0.08.
#
#    </details>
#
# 3. Rerun notebooks 01–03 into a new `run_dir` with `synthetic_per_class=40` and a new `data_root` (fewer test images). What happens to the bootstrap intervals and the marks?
#
#    <details><summary>Answer</summary>
#
#    The intervals widen roughly with 1/√n, and gaps that were marked `*` may become `ns`: the evidence is in the number of test images.
#
#    </details>
#
# 4. In `stats/paired_tests.csv`, compare `randomisation_images` with `corrected_t` for the same pair. Which one is the smaller p, and why?
#
#    <details><summary>Answer</summary>
#
#    Usually the image-level test: it uses every test image as a unit, while the corrected t-test sees only the 3 fold scores and inflates their variance for the overlap of the training sets.
#
#    </details>
