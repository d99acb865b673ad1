"""Composable pipelines: pure ``Stage(init, apply)`` pairs chained into one jittable function.

See :mod:`mskjax.pipeline._stage` for the contract. Example::

    pipe = pipeline.chain(
        pipeline.undersample(mask),
        pipeline.zero_filled(),
        pipeline.map_field(segment, source="image", target="segmentation"),
    )
    params = pipe.init(jax.random.key(0), sample)
    out = jax.jit(pipe.apply)(params, sample)
"""

from ._diagnosis import (CLASSIFIER_INPUTS, DIAGNOSIS_STAGES,
                         classifier_channels, diagnosis_loss, diagnosis_stages, freeze_stages,
                         kspace_to_diagnosis, merge_trainable, split_trainable)
from ._noncartesian import cg_sense, gridding, sample_trajectory
from ._sample import Sample
from ._stage import Stage, chain, named_chain, stateless
from ._stages import identity, map_field, undersample, zero_filled

__all__ = ["Sample", "Stage", "chain", "named_chain", "stateless", "identity", "undersample",
           "zero_filled", "map_field", "sample_trajectory", "gridding", "cg_sense",
           "kspace_to_diagnosis", "diagnosis_loss",
           "classifier_channels", "freeze_stages", "split_trainable",
           "merge_trainable", "diagnosis_stages", "DIAGNOSIS_STAGES", "CLASSIFIER_INPUTS"]
