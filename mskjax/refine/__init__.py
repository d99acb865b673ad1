"""Refinement of segmentations: connected-component clean-up and a deformable refinement of
class probabilities towards image edges.

Conventions: label maps are integer ``(*spatial)`` (0 the background); probabilities are
channels-last ``(*spatial, classes)`` summing to 1 over the last axis; images are real
``(*spatial)``; ``spacing`` is mm per voxel. One example at a time (batch with ``jax.vmap``).
Everything is pure ``jax.numpy`` (no flax): it jits, and runs in a pipeline through
``pipeline.map_field``.

- :func:`largest_component`: keep the largest connected component of each foreground class.
- :func:`connected_components`: the components themselves (first-voxel indices).
- :func:`refine_probabilities`: the convex geodesic Potts model (edge-weighted total variation
  with the negative log-probabilities as data term), solved by a primal-dual iteration;
  :func:`edge_weight` is its edge indicator.
"""

from ._components import connected_components, largest_component
from ._deformable import edge_weight, project_simplex, refine_probabilities

__all__ = ["largest_component", "connected_components", "refine_probabilities", "edge_weight",
           "project_simplex"]
