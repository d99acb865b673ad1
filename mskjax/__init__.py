"""mskjax: deep learning for musculoskeletal MRI, with the physics of MRI built in, in JAX.

The numerical core (``fourier``, ``linop``, ``sampling``, ``coils``, ``recon``, ``metrics``)
imports neither flax nor optax. Import subpackages explicitly, e.g. ``from mskjax import linop``.
"""

__version__ = "0.1.0"
