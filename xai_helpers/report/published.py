"""The study's published numbers and setting: what this toolkit is compared with, and where each comes from."""
from __future__ import annotations


import pandas as pd



#: Where every published number comes from.
PUBLISHED_SOURCE = ("Chaddad et al. (2025), Generalizable and explainable deep learning for medical image "
                    "computing, arXiv:2503.08420, abstract")

#: What the study reports and this toolkit can be compared with (the numbers quoted in its text).
PUBLISHED = pd.DataFrame([
    {"quantity": "accuracy", "dataset": "skin_cancer_isic", "model": "resnet50", "method": "", "class": "",
     "published": 0.8631},
    {"quantity": "confidence_increase", "dataset": "brain_tumor_mri", "model": "resnet50", "method": "xgradcam",
     "class": "glioma", "published": 0.12},
    {"quantity": "confidence_increase", "dataset": "brain_tumor_mri", "model": "resnet50", "method": "gradcam++",
     "class": "glioma", "published": 0.09},
    {"quantity": "confidence_increase", "dataset": "brain_tumor_mri", "model": "resnet50", "method": "layercam",
     "class": "glioma", "published": 0.08},
]).assign(source=PUBLISHED_SOURCE)


#: The study's setting as far as it is known, for the "why the numbers differ" section.
PUBLISHED_SETTING = ("ImageNet-pretrained CNNs at 224 px on the datasets' published train/test splits "
                     "(as downloaded, duplicates included); one reported accuracy per model and dataset")


#: Where the study explained ResNet50 (pytorch-grad-cam's default target layer, the ImageNet input size).
PUBLISHED_CAM_SETTING = {"layer": "layer4", "image_size": 224}


#: Where a published number's dataset has a better stand-in in the study folder, the dataset it is computed
#: on instead: the study's glioma confidence increases come from a brain MRI set, and on the Bhuvaji copy
#: (``brain_tumor_mri``), whose test split is shifted from its training split, every CNN misses most
#: gliomas, so its glioma maps explain a classifier that fails on them. The Figshare set (Cheng 2017) is
#: the source most public brain MRI sets re-use, split by patient here.
PUBLISHED_COMPUTED_ON = {("confidence_increase", "brain_tumor_mri"): "brain_tumor_figshare"}
