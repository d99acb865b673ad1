import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mskjax import recon
from mskjax.coils import birdcage_maps, normalize_maps
from mskjax.linop import Sense


def stack(count=5):
    maps = np.asarray(normalize_maps(birdcage_maps((4, 16, 12))))
    mask = np.zeros(12, bool)
    mask[::2] = True
    mask[5:8] = True
    rng = np.random.default_rng(0)
    images = rng.standard_normal((count, 16, 12)).astype(np.complex64)
    ks = np.stack([np.asarray(Sense(maps, mask=mask)(x)) for x in images])
    return ks, np.broadcast_to(maps, (count, *maps.shape)).copy(), mask


def test_map_slices_equals_a_loop_and_keeps_the_result_type():
    ks, ms, mask = stack()

    def one(k, m):
        return recon.cg_sense(k, m, mask=mask, max_iter=8)

    out = jax.jit(recon.map_slices(one, batch_size=2))(ks, ms)
    assert isinstance(out, recon.Reconstruction) and out.image.shape == (5, 16, 12)
    for i in range(5):
        single = one(ks[i], ms[i])
        np.testing.assert_allclose(out.image[i], single.image, rtol=1e-5, atol=1e-6)
        assert int(out.iterations[i]) == 8 and int(out.status[i]) == int(single.status)


def test_map_slices_over_two_devices_pads_and_equals_a_loop():
    code = textwrap.dedent("""
        import jax, numpy as np
        from mskjax import recon
        from tests.recon.test_batch import stack
        assert len(jax.devices()) == 2
        ks, ms, mask = stack(5)                      # 5 slices over 2 devices: one pad slice
        f = lambda k, m: recon.cg_sense(k, m, mask=mask, max_iter=8).image
        out = jax.jit(recon.map_slices(f))(ks, ms)
        loop = np.stack([f(k, m) for k, m in zip(ks, ms)])
        # FISTA's step from a power iteration: a loop that starts from a constant, which
        # shard_map's varying-axes check rejected before map_slices turned it off.
        g = lambda k, m: recon.l1_wavelet(k, m, mask=mask, lamda=0.01, max_iter=5,
                                         wavelet="haar").image
        out2 = jax.jit(recon.map_slices(g))(ks, ms)
        loop2 = np.stack([g(k, m) for k, m in zip(ks, ms)])
        error = max(float(np.abs(np.asarray(out) - loop).max()),
                    float(np.abs(np.asarray(out2) - loop2).max() / np.abs(loop2).max()))
        print(out.shape, error)
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu"}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    shape, error = result.stdout.strip().rsplit(" ", 1)
    assert shape == "(5, 16, 12)" and float(error) < 1e-5


def test_map_slices_bad_input():
    with pytest.raises(TypeError, match="mskjax.recon.map_slices: fn must be callable"):
        recon.map_slices("f")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        recon.map_slices(lambda x: x, batch_size=0)
    with pytest.raises(ValueError, match="the same leading slice axis"):
        recon.map_slices(lambda a, b: a)(jnp.ones((3, 2)), jnp.ones((4, 2)))
