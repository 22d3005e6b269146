"""Rate adaptation without torch: the robot bundles of a set as one :class:`ladon.model_set.EncoderSet`."""

from __future__ import annotations

import os

import numpy as np

from ladon.bundle_set import read_bundle_set
from ladon.model_set import EncoderSet, ModelSetError

from .encoder import RobotEncoder


def load_robot_encoder_set(path: str | os.PathLike[str], precision: str = "int8", *,
                           threads: int | None = None) -> EncoderSet:
    """Load every bundle of the set at ``path`` (``ladon export-encoder SET.json -o DIR``) as a
    :class:`~ladon_robot.RobotEncoder`. Each bundle is checked as one alone (sizes, SHA-256, the model hash inside
    its files) and must hold the beta and model hash its set entry names; the members must share preprocessing
    and differ in beta and hash (:class:`~ladon.model_set.EncoderSet`'s checks, typed errors)."""
    encoders = []
    for directory, beta, model_hash in read_bundle_set(path):
        encoder = RobotEncoder(directory, precision, threads=threads, expected_model_hash=model_hash)
        if np.float32(encoder.beta) != np.float32(beta):
            raise ModelSetError(f"{directory}: the set manifest says beta {beta:g}, the bundle holds "
                                f"{encoder.beta:g}")
        encoders.append(encoder)
    return EncoderSet(encoders)
