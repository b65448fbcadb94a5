"""Write the numbered notebooks from this script (the single source of their text).

    python tools/build_notebooks.py        # rewrite notebooks/*.ipynb, without outputs

Edit the notebooks here, not in Jupyter, then rerun; tests check that every notebook carries the
shared parameters cell and no outputs.
"""
from __future__ import annotations

import pprint
import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from xai_helpers.config import DEFAULTS  # noqa: E402


def parameters_cell() -> nbformat.NotebookNode:
    lines = ["# Parameters (papermill injects overrides after this cell; names shared by every notebook,",
             "# documented in the README). Defaults: the 'demo' profile on the embedded synthetic dataset."]
    for k, v in DEFAULTS.items():
        lines.append(f"{k} = {pprint.pformat(v, width=100, compact=True)}")
    cell = new_code_cell("\n".join(lines))
    cell.metadata["tags"] = ["parameters"]
    return cell


def setup_cell(title: str, extra_imports: str) -> nbformat.NotebookNode:
    return new_code_cell(
        f"{extra_imports}\n"
        "from xai_helpers.notebook import setup_notebook\n\n"
        f"params = setup_notebook(globals(), {title!r})\n"
        "run = RunFolder(params['run_dir'])")


def notebook(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


md = new_markdown_cell
code = new_code_cell

NOTEBOOKS = {}

NOTEBOOKS["01_data_preparation.ipynb"] = notebook([
    md("# 01 · Data preparation: index, audit, leak-free splits and the image cache\n\n"
       "Everything later in the study rests on this step. Public medical datasets are messy: mixed sizes and "
       "colour modes, corrupt files, and duplicated images, sometimes the *same image in the training and the "
       "test split*, which silently inflates published accuracies. This notebook\n\n"
       "1. reads the dataset folder in its published layout (or generates the embedded synthetic dataset),\n"
       "2. audits it (unreadable files, exact and near duplicates, class balance),\n"
       "3. draws leak-free splits: the published test split stays the test set, and the training pool is divided "
       "into `folds` stratified, grouped folds for cross-validation,\n"
       "4. decodes and resizes every image once into a compact cache, so that training never decodes a JPEG again.\n\n"
       "It writes `data/splits.csv`, `data/audit.json` and `data/dataset.json` into the run folder."),
    parameters_cell(),
    md("## Setup\nOne cell imports everything, checks the parameters (a wrong dataset name or a missing folder "
       "stops here with a message that names the parameter) and records the environment."),
    setup_cell("01 · Data preparation",
               "import pandas as pd\nfrom IPython.display import display\n\n"
               "from xai_helpers import RunFolder\nfrom xai_helpers.data.prepare import prepare_dataset\n"
               "from xai_helpers.data.audit import audit_summary\n"
               "from xai_helpers.figures import plot_class_counts, plot_samples"),
    md("## Read, audit, split and cache\n"
       "With `dataset='synthetic'` the embedded dataset is generated first (seeded, a few seconds, no download). "
       "Every file is hashed and decoded once; files that cannot be read are reported and left out, never "
       "dropped silently."),
    code("data = prepare_dataset(params)\n"
         "print(f\"{data.info['title']}\\nlayout: {data.info['layout']}   classes: {data.class_names}   \"\n"
         "      f\"images used: {len(data.splits)}   cache: {data.images.shape} uint8\")"),
    md("## What the audit found\n"
       "Exact duplicates are byte-identical files; near duplicates have perceptual hashes within a small Hamming "
       "distance (the hash and the threshold are named in `audit.json`). Duplicates *across* splits are leaks: "
       "by default the training copies of anything that also sits in the test split are dropped."),
    code("display(audit_summary(data.audit))"),
    md("## A look at the images\nA few images per class (lesion masks outlined in red where the dataset has them)."),
    code("rows = data.splits.groupby('class', sort=True).head(4).index.to_numpy()\n"
         "fig = plot_samples(data.images[rows], list(data.splits['class'].iloc[rows]), data.masks(rows), run=run, name='samples')"),
    md("## The splits\nThe test split is the same for every fold and every model; the folds of the training pool "
       "are stratified by class and grouped (a patient, a lesion, a set of duplicates never straddles two folds). "
       "`data/splits.csv` lets anyone repeat the run exactly."),
    code("fig = plot_class_counts(data.splits, run=run)\n"
         "display(data.splits.groupby(['split', 'fold', 'class']).size().unstack('class'))"),
])

NOTEBOOKS["02_training.ipynb"] = notebook([
    md("# 02 · Training the four CNNs with k-fold cross-validation\n\n"
       "The study compares ResNet50, DenseNet121, VGG16 and EfficientNet-B0 by accuracy and F1. A single split "
       "says little about such differences, so every model is trained on the **same folds**: fold *k*'s model "
       "validates on fold *k* (early stopping on macro-F1) and trains on the others, and every fold's model is "
       "tested on the **same held-out test split**. The results are therefore paired, which notebook 03 uses.\n\n"
       "Writes `metrics.csv` (one row per model and fold), `predictions/<model>_fold<k>.csv` and the checkpoints."),
    parameters_cell(),
    md("## Setup"),
    setup_cell("02 · Training",
               "import pandas as pd\nfrom IPython.display import display\n\n"
               "from xai_helpers import RunFolder\nfrom xai_helpers.data.prepare import load_prepared\n"
               "from xai_helpers.figures import plot_confusion_matrices, plot_learning_curves, plot_metric_by_model\n"
               "from xai_helpers.models import model_overview\n"
               "from xai_helpers.study import train_and_evaluate"),
    md("## The data from notebook 01\nImages come from the uint8 cache; batches are normalised and augmented "
       "(flips, small affine transforms, brightness/contrast) on the training device."),
    code("data = load_prepared(params)\n"
         "print(f\"{len(data.splits)} images, classes {data.class_names}, folds {data.folds}, \"\n"
         "      f\"{params['image_size']} px\")"),
    md("## The models\nEach CNN comes from torchvision with its classification head replaced for our classes. "
       "All four downsample by 32, so the image size decides how coarse the last feature map is (at least 2×2 is "
       "required). `weights='imagenet'` loads torchvision's ImageNet weights (offline: the error says which file to "
       "put where); the demo trains from scratch, since nothing can be downloaded."),
    code("display(model_overview(params['models'], params['image_size']))"),
    md("## Train and test every model on every fold\n"
       "Each fit writes its best checkpoint (by validation macro-F1) atomically; an interrupted run picks up where "
       "it stopped when this cell is run again.\n\n"
       "**Protocol choices that change results** (all recorded with each checkpoint and shown in the report's "
       "protocol table): Adam with a **cosine learning-rate schedule** over `epochs`; **augmentation** on the "
       "training batches (horizontal flips, rotation within ±10°, scaling within ±10 %, shifts within ±5 %, "
       "brightness and contrast within ±10 %); **early stopping** on validation macro-F1 after `patience` epochs "
       "without improvement, but **never before half of `epochs`** (VGG16 and EfficientNet trained from scratch "
       "often sit at chance for a few epochs before they learn); and, before each validation, **BatchNorm "
       "recalibration**: the running statistics are re-estimated as a plain average over up to 1,024 training "
       "images, a seeded sample stratified by class (\"precise BN\"), because the running averages of a network "
       "trained from scratch keep traces of its first, unstable steps."),
    code("metrics = train_and_evaluate(data, params)\n"
         "display(metrics[['model', 'fold', 'accuracy', 'balanced_accuracy', 'f1_macro', 'roc_auc_ovr', "
         "'best_epoch', 'epochs_run', 'train_seconds']].round(4))"),
    md("## Results\nPoints are folds, bars their mean; the dashed line is chance (one over the number of classes)."),
    code("chance = 1 / len(data.class_names)\n"
         "print(f'chance level: {chance:.3f}')\n"
         "display(metrics.groupby('model', sort=False)[['accuracy', 'f1_macro']].agg(['mean', 'std']).round(4))\n"
         "fig = plot_metric_by_model(metrics, chance=chance, run=run)"),
    md("## Confusion matrices\nTest predictions of every fold's model, summed over the folds."),
    code("preds = {m: pd.concat([pd.read_csv(run.predictions_file(m, f)) for f in g.fold]) for m, g in metrics.groupby('model', sort=False)}\n"
         "fig = plot_confusion_matrices(preds, data.class_names, run=run)"),
    md("## Learning curves"),
    code("histories = {f'{r.model} fold{r.fold}': pd.read_csv(run.checkpoint_dir(r.model, r.fold) / 'history.csv')\n"
         "             for r in metrics.itertuples()}\n"
         "fig = plot_learning_curves(histories, run=run)"),
])

NOTEBOOKS["03_statistics.ipynb"] = notebook([
    md("# 03 · Are the differences between models significant?\n\n"
       "The study uses paired t-tests. With a handful of folds, and six model pairs, a plain t-test misleads, so "
       "this notebook runs the right test for each pairing, corrects for multiple comparisons and reports effect "
       "sizes and intervals.\n\n"
       "**Which test for which pairing, and what each assumes**\n\n"
       "* *Same test images, every fold model* (`predictions/`): the **image-level paired bootstrap** "
       "(`bootstrap_images`, the headline mark). The unit that carries the evidence is the test image: a new test "
       "set would change the images, not the folds. For each image its correctness is averaged over the fold "
       "models (the share of folds that got it right); the images are resampled in pairs (49,999 resamples, so that p can fall below 0.001 after Holm) and the "
       "difference of the two models' accuracy (and macro-F1, averaged over the fold models) is recomputed on "
       "each resample. It assumes the test images are independent draws; its p-value is "
       "`min(1, 2(1 + #)/(B + 1))`, never 0.\n"
       "* *Same folds* (`metrics.csv`): the **paired t-test** (as in the study) assumes the fold differences are "
       "independent and roughly normal. They are not independent: the training sets of the folds overlap, so its "
       "p-values are too small. The **Nadeau–Bengio corrected resampled t-test** inflates the variance by "
       "`1/k + n_val/n_train` (the held-out fold against the training folds, about `1/k + 1/(k−1)`; Bouckaert & "
       "Frank 2004) to account for that. The **Wilcoxon signed-rank** test drops normality and assumes only "
       "symmetric differences, but with *n* folds its two-sided p-value cannot go below `2/2^n` (0.25 for three "
       "folds); its interval (Hollander & Wolfe's, from the Walsh averages) cannot reach 95 % either, and "
       "`ci_level` says what it reaches (75 % with three folds). **Every fold model is scored on the same test "
       "split**, so these fold-level tests are *conditional on that test set*: they see how training varies, not "
       "how the test images do. With three folds they have almost no power: a 55-point gap can come out `ns`. "
       "That is why the summary table's mark is the image-level bootstrap, with the corrected t beside it.\n"
       "* *Same test images, one fold* (`predictions/`): **McNemar's test** compares two models' correct/incorrect "
       "outcomes image by image (exact binomial for fewer than 25 disagreements, chi-square with continuity "
       "correction otherwise), and a **paired bootstrap** gives an interval of the accuracy and F1 differences.\n"
       "* *Same explained images* (`xai_per_image.csv`, after notebook 05): paired t and Wilcoxon between CAM "
       "methods, with **one value per image**: every fold's model explains the same images, so each image's metric "
       "is averaged over the fold models first, and `n` is the number of distinct images.\n\n"
       "**Which family Holm corrects over** (`holm_family`): one comparison (models or CAM methods), one group "
       "(all images, one fold, or one true class), one metric and one test family, across every pair compared "
       "there. Both McNemar variants (exact and chi-square, chosen per pair) are one family; each other test is its "
       "own.\n\n"
       "**How to read the table**: `p_value` is the raw p, `p_adjusted` the Holm-corrected one in its "
       "`holm_family` (use this one), `effect_size` is Cohen's d_z for t-tests (the mean difference in units of "
       "its standard deviation), the rank-biserial correlation for Wilcoxon and the accuracy difference "
       "`acc(a) − acc(b)` for McNemar and the bootstraps; `ci_low`/`ci_high` bound the difference at the level "
       "`ci_level`; `normality_p` is a Shapiro–Wilk check of the differences. Identical results give p = 1; a "
       "single fold gives 'not testable'."),
    parameters_cell(),
    md("## Setup"),
    setup_cell("03 · Statistics",
               "import pandas as pd\nfrom IPython.display import display\n\n"
               "from xai_helpers import RunFolder\n"
               "from xai_helpers.figures import plot_paired_lines, plot_pvalue_heatmap\n"
               "from xai_helpers.stats import summary_table\n"
               "from xai_helpers.study import paired_tests_for_run"),
    md("## Run every paired test\nResults go to `stats/paired_tests.csv`."),
    code("metrics = run.read_metrics()\n"
         "tests = paired_tests_for_run(params)\n"
         "cols = ['comparison', 'group', 'a', 'b', 'metric', 'test', 'n', 'statistic', 'p_value', 'p_adjusted',\n"
         "        'holm_family', 'effect_size', 'ci_low', 'ci_high', 'ci_level', 'note']\n"
         "display(tests[(tests.comparison == 'models') & (tests.group == 'all')][cols].round(4))"),
    md("## The paper-style table\nMean ± standard deviation over folds; the mark compares each model with the best "
       "one by the image-level bootstrap, Holm-adjusted (`*` p < 0.05, `**` p < 0.01, `***` p < 0.001, `ns` not "
       "significant). The columns `(corrected_t)` give the corrected resampled t-test's mark for the same pair."),
    code("table = summary_table(metrics, tests, ('accuracy', 'f1_macro'))\n"
         "run.write_csv(table.reset_index(), run.summary_table_file)\n"
         "display(table)"),
    md("## Figures\nAdjusted p-values per pair (image-level bootstrap, then the corrected t), and the fold-wise "
       "values joined per fold."),
    code("for metric in ('accuracy', 'f1_macro'):\n"
         "    plot_pvalue_heatmap(tests, metric, 'bootstrap_images', run=run)\n"
         "    plot_pvalue_heatmap(tests, metric, 'corrected_t', run=run)\n"
         "    plot_paired_lines(metrics, metric, run=run)"),
    md("## Same test images, one fold: McNemar and bootstrap\nOne row per fold and model pair."),
    code("display(tests[tests.group.str.startswith('fold')][cols].round(4).head(24))"),
    md("## What the data can and cannot show\nA non-significant result is *not* evidence that two models are "
       "equally good: look at the interval of the difference. A significant plain t-test that the corrected test "
       "does not confirm is most likely an artefact of overlapping training sets; a significant image-level test "
       "that the corrected t does not confirm says the gap holds on these test images for these fold models, "
       "while three folds are too few to say how much it varies with the training data."),
])

NOTEBOOKS["04_explanations.ipynb"] = notebook([
    md("# 04 · Explanations: five CAM methods side by side\n\n"
       "The study explains ResNet50 with GradCAM, GradCAM++, XGradCAM, EigenGradCAM and LayerCAM. All five are "
       "functions of the same two tensors of the target layer, its activations *A* and the gradient *G* of the "
       "explained class's logit, so `xai_helpers.compute_cams` computes all five from **one forward and one "
       "backward pass** (the maps equal pytorch-grad-cam's within 1e-5).\n\n"
       "**Image size and target layer.** CAMs are only as fine as the target layer's feature map. ResNet50 "
       "downsamples by 32 at `layer4`, 16 at `layer3` and 8 at `layer2`: at the demo's 64 px, `layer4` is 2×2 and "
       "`layer3` 4×4, too coarse to localise a lesion, so the demo explains `layer2`, an 8×8 map. At 224 px "
       "`layer4` gives 7×7. The cell below prints the size for the parameters of this run."),
    parameters_cell(),
    md("## Setup"),
    setup_cell("04 · Explanations",
               "import numpy as np\nimport pandas as pd\nimport torch\nfrom IPython.display import display\n\n"
               "from xai_helpers import RunFolder, compute_cams\nfrom xai_helpers.data.prepare import load_prepared\n"
               "from xai_helpers.figures import cam_grid\nfrom xai_helpers.models import feature_map_size\n"
               "from xai_helpers.cams import resolve_target_layer\n"
               "from xai_helpers.study import explanation_sample\n"
               "from xai_helpers.training import BatchPipeline, load_checkpoint, resolve_device\n"
               "from xai_helpers.widgets import CamExplorer"),
    md("## The model and the target layer\nThe best checkpoint of fold 0 of the explained model."),
    code("data = load_prepared(params)\n"
         "device = resolve_device(params['device'])\n"
         "model, meta = load_checkpoint(run.checkpoint_dir(params['cam_model'], 0) / 'best.pt', device)\n"
         "_, layer = resolve_target_layer(model, params['cam_layer'])\n"
         "h, w = feature_map_size(params['cam_model'], params['image_size'], layer)\n"
         "print(f\"{params['cam_model']} at {params['image_size']} px: target layer {layer!r} gives a {h}x{w} map \"\n"
         "      f\"before upsampling\")"),
    md("## Five methods, one pass\nA few test images per class; each map explains the predicted class. Lesion "
       "masks (synthetic data) are outlined, so you can see at a glance whether a map points at the lesion."),
    code("pipeline = BatchPipeline(data.images, device)\n"
         "rows = explanation_sample(data, 2, params['seed'])\n"
         "x = pipeline.batch(torch.as_tensor(rows))\n"
         "maps, probs = compute_cams(model, x, params['cam_methods'], target_layer=layer)\n"
         "labels = [f\"true {data.class_names[data.labels[r]]}\\npred {data.class_names[p]} ({q:.2f})\"\n"
         "          for r, p, q in zip(rows, probs.argmax(1), probs.max(1))]\n"
         "fig = cam_grid(data.images[rows], maps, labels, data.masks(rows), run=run, name='cam_grid',\n"
         "               title=f\"{params['cam_model']} · {layer}\")"),
    md("## Why GradCAM and XGradCAM agree at ResNet50's last block\n"
       "After `layer4` come global average pooling and one linear layer, so the gradient of a logit with respect to "
       "`layer4`'s output is the same at every position: `G[c, i, j] = w[c] / (h·w)`. GradCAM's weights are the "
       "spatial mean of G, i.e. `w[c]/(h·w)`; XGradCAM's are `Σ G·A / Σ A = w[c]/(h·w)` as well. The maps are "
       "identical (and need no backward pass at all: the weights are the linear layer's). At earlier layers the "
       "gradient varies in space and the methods differ, which is why the demo explains `layer2`."),
    code("diffs = {}\n"
         "for name in ('layer4', layer):\n"
         "    m, _ = compute_cams(model, x, ['gradcam', 'xgradcam'], target_layer=name)\n"
         "    diffs[name] = float(np.abs(m['gradcam'] - m['xgradcam']).max())\n"
         "display(pd.Series(diffs, name='max |GradCAM - XGradCAM|').to_frame())"),
    md("## EigenGradCAM's sign\nEigenGradCAM projects `G·A` on its first principal component. The sign of a "
       "singular vector is arbitrary: pytorch-grad-cam leaves it to LAPACK, and `eigengradcam` here is exactly the "
       "library's map (the same float32 numpy SVD, so the same sign). After the ReLU a flipped sign shows the "
       "*complement* of the lesion. `eigengradcam_signed` is the documented corrected variant: it applies the "
       "library's own correction (`get_2d_projection_with_sign_correction`: flip when |min| > |max|). The study's "
       "numbers are for the uncorrected map."),
    code("eig, _ = compute_cams(model, x, ['eigengradcam', 'eigengradcam_signed'], target_layer=layer)\n"
         "flipped = [i for i in range(len(rows)) if not np.allclose(eig['eigengradcam'][i], eig['eigengradcam_signed'][i])]\n"
         "print(f'sign flipped by the correction on {len(flipped)} of {len(rows)} images')\n"
         "fig = cam_grid(data.images[rows], eig, labels, data.masks(rows), run=run, name='eigengradcam_sign')"),
    md("## Explore\nWith `interactive=True` (opening the notebook in JupyterLab) the explorer below lets you pick "
       "an image (by index, class, or among misclassified and low-confidence ones), the methods, the target class, "
       "the model and layer, the opacity and the colour map. Under the runner (`interactive=False`) the same views "
       "are drawn as a static grid, so the executed copy shows them."),
    code("explorer = CamExplorer(data, params)\n"
         "if params['interactive']:\n"
         "    display(explorer.widget)\n"
         "else:\n"
         "    fig = explorer.static_grid(run=run)"),
])

NOTEBOOKS["05_explanation_metrics.ipynb"] = notebook([
    md("# 05 · How good are the explanations? Confidence increase and friends\n\n"
       "The study rates the CAM methods by **confidence increase**: the change of the explained class's softmax "
       "score when the (normalised) input is multiplied by the CAM, "
       "`softmax(f(x ⊙ cam))[c] − softmax(f(x))[c]` (pytorch-grad-cam's `CamMultImageConfidenceChange` with a "
       "softmax target). A map that keeps what the model needs raises (or keeps) the score.\n\n"
       "One metric is not enough to compare methods honestly, so this notebook also reports Chattopadhay et al.'s "
       "**average drop %** and **increase in confidence %** (as the paper defines them: the *image* in [0, 1] is "
       "multiplied by the map, black where the map is 0, then normalised), Petsiuk et al.'s **deletion** and "
       "**insertion** AUC, Rong et al.'s **ROAD** (remove and debias; exactly *p* % of the pixels removed at each "
       "percentile, ties broken at random as in their reference code) and Adebayo et al.'s **randomisation sanity "
       "check** (every parameterised layer re-initialised, top to bottom; the costly "
       "ones on a subsample of images per class, as each costs many forwards per image), and, where lesion masks "
       "exist (the synthetic dataset), the **pointing game** (Zhang et al.'s 15-pixel tolerance, scaled to the "
       "image size), the **energy inside the mask** and the **IoU** at 0.5: a check against ground truth.\n\n"
       "Each map explains the model's **predicted** class, and every score is the **softmax** probability of that "
       "class.\n\n"
       "Writes `xai_per_image.csv` (one row per model, fold, method and image), `xai_metrics.csv` (mean per model, "
       "method and true class) and adds the CAM method pairs to `stats/paired_tests.csv`."),
    parameters_cell(),
    md("## Setup"),
    setup_cell("05 · Explanation metrics",
               "import pandas as pd\nfrom IPython.display import display\n\n"
               "from xai_helpers import RunFolder\nfrom xai_helpers.data.prepare import load_prepared\n"
               "from xai_helpers.cam_metrics import ALL_METRICS\n"
               "from xai_helpers.figures import plot_pvalue_heatmap, plot_randomisation, plot_xai_metric\n"
               "from xai_helpers.study import explain_test_images, paired_tests_for_run"),
    md("## Explain the test sample with every fold's model\n`explain_per_class` test images per class, the same "
       "images for every fold and method, so that methods can be compared image by image."),
    code("data = load_prepared(params)\n"
         "per_image = explain_test_images(data, params)\n"
         "xai = pd.read_csv(run.xai_metrics_file)\n"
         "print(f'{len(per_image)} rows: {per_image.fold.nunique()} folds x {per_image.method.nunique()} methods x '\n"
         "      f'{per_image.path.nunique()} images')"),
    md("## Confidence increase per method and class\nThe study's table (e.g. XGradCAM 0.12 on glioma, GradCAM++ 0.09, "
       "LayerCAM 0.08), here for this run: the mean over images and folds."),
    code("display(xai.pivot_table(index='method', columns='class', values='confidence_increase').round(4))\n"
         "fig = plot_xai_metric(xai, 'confidence_increase', run=run)"),
    md("## Every metric, overall\nHigher is better except for average drop and deletion AUC."),
    code("overall = per_image.groupby('method')[[m for m in ALL_METRICS if m in per_image]].mean()\n"
         "display(overall.round(4).T)"),
    md("## Sanity check: do the maps depend on what the model learnt?\nAdebayo et al. (2018) re-initialise the "
       "model block by block from the top and compare each map with the trained model's (Spearman rank "
       "correlation). A method whose maps barely change explains the architecture or the image, not the model. "
       "The correlation should fall as more of the network is randomised."),
    code("curves = pd.read_csv(run.xai_randomisation_file)\n"
         "fig = plot_randomisation(curves, run=run)"),
    md("## Pointing game: does the map point at the lesion?\nOnly images with a lesion mask count (no-lesion images "
       "have nothing to point at)."),
    code("if per_image['pointing_game'].notna().any():\n"
         "    display(per_image.dropna(subset=['pointing_game']).groupby('method')['pointing_game'].agg(['mean', 'count']).round(3))\n"
         "    fig = plot_xai_metric(xai.dropna(subset=['pointing_game']), 'pointing_game', run=run)\n"
         "else:\n"
         "    print('no lesion masks in this dataset: localisation metrics are not available')"),
    md("## Ranking of the methods, with its paired tests\nMethods are ranked by mean confidence increase; the paired "
       "tests say which gaps in the ranking are real. The unit is the image: each image's value is averaged over "
       "the fold models before the methods are paired, so `n` is the number of distinct images (Holm-corrected "
       "across the method pairs; notebook 03 explains the families)."),
    code("tests = paired_tests_for_run(params)\n"
         "ranking = overall['confidence_increase'].sort_values(ascending=False)\n"
         "display(ranking.rename('mean confidence increase').to_frame())\n"
         "cams = tests[(tests.comparison == 'cams') & (tests.group == 'all') & (tests.metric == 'confidence_increase')]\n"
         "display(cams[['a', 'b', 'test', 'n', 'mean_a', 'mean_b', 'p_value', 'p_adjusted', 'effect_size']].round(4))\n"
         "fig = plot_pvalue_heatmap(tests, 'confidence_increase', 'paired_t', comparison='cams', run=run)"),
])

NOTEBOOKS["06_study_summary.ipynb"] = notebook([
    md("# 06 · The study across datasets, next to the published numbers\n\n"
       "The study reports accuracy and F1 of four CNNs on three datasets and the confidence increase of five CAM "
       "methods, e.g. ResNet50 at **86.31 %** accuracy on skin cancer, and on glioma **XGradCAM 0.12**, "
       "**GradCAM++ 0.09**, **LayerCAM 0.08**. This notebook gathers every dataset run of a study folder (the "
       "`paper` profiles write `runs/paper/<dataset>/`; a single run folder such as `runs/demo` counts as one "
       "dataset) into one set of tables, puts the published numbers beside ours, and says why they differ.\n\n"
       "**Why they can differ at all.** A reproduction changes more than the code: pretrained weights or not, the "
       "image size, the splits (the published Kaggle splits hold duplicates across train and test, which notebook "
       "01 removes), and whether a number is one model's or a mean over folds. The report lists each of these for "
       "every dataset, so a gap can be read, not guessed at.\n\n"
       "Writes `report.md` and the `study_*` figures into the study folder (`run_dir`)."),
    parameters_cell(),
    md("## Setup"),
    setup_cell("06 · Study summary",
               "import pandas as pd\nfrom IPython.display import Markdown, display\n\n"
               "from xai_helpers import RunFolder\n"
               "from xai_helpers.figures import plot_confidence_heatmaps, plot_study_metric\n"
               "from xai_helpers.report import (confidence_table, load_study, performance_table, protocol_table,\n"
               "                                published_comparison, write_report)"),
    md("## Every dataset run in the study folder\nHow each was run: image size, the weights actually used "
       "(`auto` falls back to training from scratch when ImageNet weights cannot be loaded), folds, caps, the "
       "duplicates the audit removed."),
    code("runs = load_study(params['run_dir'])\n"
         "print(f\"{len(runs)} dataset run(s): {', '.join(r.dataset for r in runs)}\")\n"
         "display(protocol_table(runs).set_index('dataset').T)"),
    md("## Accuracy and F1 per CNN and dataset\nMean ± standard deviation over the fold models, each tested on the "
       "same held-out test split; the mark compares each model with the dataset's best one by the paired bootstrap "
       "over the test images (every fold model's results averaged per image), Holm-adjusted, and the `corrected_t` "
       "columns by the corrected resampled t-test over the folds (notebook 03 explains both)."),
    code("display(performance_table(runs))\n"
         "metrics = pd.concat([r.metrics for r in runs], ignore_index=True)\n"
         "fig = plot_study_metric(metrics, 'accuracy', run=run)\n"
         "fig = plot_study_metric(metrics, 'f1_macro', run=run)"),
    md("## Confidence increase per CAM method and class\nMean over the explained test images of every fold; the "
       "mark compares each method with the class's best one on the same images (paired t-test, Holm-adjusted)."),
    code("conf = confidence_table(runs)\n"
         "if len(conf):\n"
         "    display(conf.pivot_table(index=['dataset', 'method'], columns='class', values='confidence_increase').round(4))\n"
         "    fig = plot_confidence_heatmaps(conf, run=run)\n"
         "else:\n"
         "    print('no xai_metrics.csv yet: run notebook 05 first')"),
    md("## Next to the published numbers\nOnly the published numbers whose dataset is in this study folder get a "
       "value under `ours`."),
    code("display(published_comparison(runs).round(4))"),
    md("## The report\n`report.md` holds all of the above, the generalization summary of notebook 07 where it "
       "has run, and the reasons for each difference, per dataset."),
    code("path = write_report(params['run_dir'], runs)\n"
         "print(path)\n"
         "display(Markdown(path.read_text()))"),
])

NOTEBOOKS["07_generalization.ipynb"] = notebook([
    md("# 07 · Do the models generalize? Corruptions, another site, calibration, explanation stability\n\n"
       "A test split drawn from the same collection as the training images says little about a model in another "
       "hospital. This notebook asks four questions of every trained model and fold:\n\n"
       "1. **Degraded images**: how fast do accuracy and F1 fall under noise, blur, lower contrast, JPEG "
       "compression, lower resolution and a simulated scanner intensity shift, at graded severities (1 mild … 5 "
       "severe, the same corrupted images for every model)?\n"
       "2. **Another site**: how does it do on an external test set (`external_data_root`, any supported layout, "
       "its classes mapped onto ours by canonical name, so `glioma_tumor` is `glioma`, or by `class_map`; classes "
       "without a match are reported, not dropped silently)? Every external image is first checked against the "
       "training images (identical bytes, or a perceptual hash within the audit's threshold): copies are left out "
       "and counted, since a public 'external' set often holds the training images (Nickparvar's brain MRI set "
       "contains Bhuvaji's). The embedded synthetic dataset brings its own: a second synthetic set with brighter "
       "tissue and twice the noise.\n"
       "3. **Calibration**: is its confidence still honest there (expected calibration error, 15 bins; "
       "reliability diagrams)?\n"
       "4. **Explanations**: do the CAMs stay put when the image degrades (rank correlation of each corrupted "
       "image's map with its clean map, for the same target class)?\n\n"
       "Writes `generalization.csv` (one row per model, fold and condition), `generalization_reliability.csv`, "
       "`generalization_cams.csv` and `generalization_external.json`."),
    parameters_cell(),
    md("## Setup"),
    setup_cell("07 · Generalization",
               "import json\n\nimport pandas as pd\nfrom IPython.display import display\n\n"
               "from xai_helpers import RunFolder\nfrom xai_helpers.data.prepare import load_prepared\n"
               "from xai_helpers.figures import (plot_cam_stability, plot_corruption_curves, plot_corruptions,\n"
               "                                 plot_reliability)\n"
               "from xai_helpers.generalization import (CORRUPTIONS, SEVERITY_LEVELS, corrupt, run_generalization,\n"
               "                                        severity_summary)\n"
               "from xai_helpers.study import explanation_sample"),
    md("## What the corruptions look like\nOne test image per class at every severity this run uses "
       "(parameters in `SEVERITY_LEVELS`)."),
    code("data = load_prepared(params)\n"
         "rows = explanation_sample(data, 1, params['seed'])\n"
         "sev = max(params['corruption_severities'])\n"
         "views = {name: corrupt(data.images[rows], name, sev, params['seed']) for name in CORRUPTIONS}\n"
         "fig = plot_corruptions(data.images[rows], views, [data.class_names[data.labels[r]] for r in rows],\n"
         "                       run=run, title=f'corruptions at severity {sev}')\n"
         "display(pd.DataFrame(SEVERITY_LEVELS, index=pd.Index(range(1, 6), name='severity')).T)"),
    md("## Every model and fold under every condition\nThe test images are the test split (capped at "
       "`generalization_per_class` per class), identical for every model, so the rows are paired."),
    code("table = run_generalization(data, params)\n"
         "ext_file = run.generalization_external_file\n"
         "if ext_file.is_file():\n"
         "    ext = json.loads(ext_file.read_text())\n"
         "    overlap = ext['training_overlap']\n"
         "    print(f\"external set {ext['name']} ({ext['layout']}): {ext['images_used']} images; classes mapped \"\n"
         "          f\"{ext['class_mapping']}\")\n"
         "    print(f\"classes scored: {', '.join(ext['classes_evaluated'])}\")\n"
         "    if ext['unmapped_classes']:\n"
         "        print(f\"WARNING: classes with no training class are NOT scored: {ext['unmapped_classes']} \"\n"
         "              f\"(name them with class_map); the external accuracy covers the classes above only\")\n"
         "    print(f\"training images found in the external set and left out: {overlap['exact']} byte copies, \"\n"
         "          f\"{overlap['near']} near copies (perceptual hash within {overlap['near_threshold']} bits)\")\n"
         "else:\n"
         "    print('no external set: pass external_data_root=<folder> (and class_map if names differ)')\n"
         "display(table.groupby(['model', 'condition', 'severity'], sort=False)[['accuracy', 'f1_macro', 'ece']]\n"
         "       .mean().round(3).head(12))"),
    md("## Accuracy and F1 against severity\nSeverity 0 is the clean test set; the dashed line is chance."),
    code("chance = 1 / len(data.class_names)\n"
         "for metric in ('accuracy', 'f1_macro'):\n"
         "    fig = plot_corruption_curves(severity_summary(table, metric), metric, chance=chance, run=run)"),
    md("## Clean, external and calibration\nA model that is as confident on the external set as on its own test "
       "set but less accurate there is *over*-confident out of distribution: its ECE grows."),
    code("summary = table[(table.condition == 'clean') | table.condition.str.startswith('external:')]\n"
         "display(summary.groupby(['model', 'condition'], sort=False)[['accuracy', 'f1_macro', 'ece', 'mean_confidence']]\n"
         "       .agg(['mean', 'std']).round(3))\n"
         "fig = plot_reliability(pd.read_csv(run.generalization_reliability_file), run=run)"),
    md("## Do the explanations stay put?\nSpearman rank correlation between each corrupted image's CAM and its clean "
       "CAM (same target class, the clean prediction), for the explained model (`cam_model`). 1 means the map did "
       "not move; a method whose maps collapse under mild noise explains the noise as much as the lesion."),
    code("stability = pd.read_csv(run.generalization_cams_file)\n"
         "if len(stability):\n"
         "    display(stability.groupby(['condition', 'severity', 'method'])['spearman_mean'].mean().unstack('method').round(3))\n"
         "    fig = plot_cam_stability(stability, run=run)\n"
         "else:\n"
         "    print(f\"{params['cam_model']} was not trained in this run: no CAMs to compare\")"),
])

if __name__ == "__main__":
    out_dir = ROOT / "notebooks"
    out_dir.mkdir(exist_ok=True)
    for name, nb in NOTEBOOKS.items():
        nbformat.validate(nb)
        nbformat.write(nb, out_dir / name)
        print("wrote", out_dir / name)
