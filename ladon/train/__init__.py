"""Training Ladon models: the authors' recipe (stages a1, a2, b, c) and an offline teacher, driven by YAML configs.

Entry points: ``ladon train CONFIG.yaml`` (:func:`train_main`), ``python -m ladon.train CONFIG.yaml`` and
``torchrun --nproc_per_node N -m ladon.train CONFIG.yaml`` (DistributedDataParallel). The config format is
described in :mod:`ladon.train.config`; ready-made configs are in ``configs/``. The teacher model lives in
:mod:`ladon.teacher` (training, evaluation and the benchmark use it); the data sets in :mod:`ladon.datasets`.
"""

from __future__ import annotations

from .config import TrainConfig, TrainConfigError, config_from_dict, load_config
from .pipeline import run_pipeline, train_main
from .stages import train_a1_feature_distillation, train_a2_kd, train_b_detection, train_c_segmentation, train_teacher

__all__ = [
    "TrainConfig", "TrainConfigError", "config_from_dict", "load_config", "run_pipeline",
    "train_a1_feature_distillation", "train_a2_kd", "train_b_detection", "train_c_segmentation", "train_main",
    "train_teacher",
]
