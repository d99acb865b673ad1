"""The triplanar CNN: patch extraction against numpy slicing, whole-volume (fully
convolutional) inference against per-voxel calls, the dilated convolution against lax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax import nets, pipeline
from mskjax.nets import _triplanar

TINY = dict(chans=(3, 4), kernel_size=3, hidden=5)


def numpy_patches(volume, coords, p):
    before = p // 2
    padded = np.pad(volume, [(before, p - 1 - before)] * 3 + [(0, 0)])
    out = []
    for x, y, z in coords:
        # patch k: the plane through the voxel perpendicular to axis k
        out.append([padded[x + before, y:y + p, z:z + p],
                    padded[x:x + p, y + before, z:z + p],
                    padded[x:x + p, y:y + p, z + before]])
    return np.asarray(out)


@pytest.mark.parametrize("p", [6, 7])
def test_patches_match_numpy_slicing(p):
    rng = np.random.default_rng(p)
    volume = rng.standard_normal((5, 6, 7, 2)).astype(np.float32)
    coords = np.array([[0, 0, 0], [4, 5, 6], [2, 3, 1], [0, 5, 3]])
    out = jax.jit(nets.triplanar_patches, static_argnames="patch_size")(
        volume, coords, patch_size=p)
    assert out.shape == (4, 3, p, p, 2)
    np.testing.assert_array_equal(out, numpy_patches(volume, coords, p))
    # the centre voxel sits at index p // 2 of every patch
    centre = volume[2, 3, 1]
    np.testing.assert_array_equal(np.asarray(out)[2, :, p // 2, p // 2], [centre] * 3)


def test_dilated_convolution_equals_lax():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 17, 14, 3)).astype(np.float32)
    kernel = rng.standard_normal((3, 4, 3, 5)).astype(np.float32)
    for d in (1, 2, 4):
        ref = jax.lax.conv_general_dilated(x, kernel, (1, 1), "VALID", rhs_dilation=(d, d),
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))
        np.testing.assert_allclose(_triplanar._dilated_conv(jnp.asarray(x), kernel, d), ref,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("p", [14, 15])
def test_whole_volume_inference_equals_per_voxel_calls(p):
    model = nets.TriplanarCNN(2, 3, patch_size=p, **TINY, rngs=nnx.Rngs(0))
    volume = np.random.default_rng(1).standard_normal((2, 6, 7, 5, 2)).astype(np.float32)
    graphdef, state = nnx.split(model)
    segment = jax.jit(lambda s, v: nnx.merge(graphdef, s).segment(v, slice_batch=4))
    logits = np.asarray(segment(state, volume))
    assert logits.shape == (2, 6, 7, 5, 3)
    call = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))
    coords = np.array([[0, 0, 0], [5, 6, 4], [3, 2, 1], [1, 6, 0]])
    for b in range(2):
        per_voxel = np.asarray(call(state, nets.triplanar_patches(volume[b], coords,
                                                                  patch_size=p)))
        np.testing.assert_allclose(logits[b][tuple(coords.T)], per_voxel, rtol=1e-5,
                                   atol=1e-5 * np.abs(per_voxel).max())
    whole = jax.jit(lambda s, v: nnx.merge(graphdef, s).segment(v))(state, volume)
    np.testing.assert_allclose(whole, logits, rtol=1e-6, atol=1e-6)


def test_default_sizes_are_the_papers():
    model = nets.TriplanarCNN(1, 2, rngs=nnx.Rngs(0))
    plane = model.planes[0]
    assert plane.kernel1.shape == (5, 5, 1, 20) and plane.kernel2.shape == (5, 5, 20, 50)
    assert plane.kernel3.shape == (4, 4, 50, 64)  # 28 -> 24 -> 12 -> 8 -> 4
    patches = jnp.zeros((3, 3, 28, 28, 1))
    assert model(patches).shape == (3, 2)


def test_triplanar_stage_in_a_jitted_chain():
    volume = np.random.default_rng(2).standard_normal((5, 4, 6)).astype(np.float32)
    model = nets.TriplanarCNN(1, 2, patch_size=10, **TINY, rngs=nnx.Rngs(3))
    pipe = pipeline.chain(nets.stage(model),
                          pipeline.map_field(nets.predict_labels, source="segmentation"))
    sample = pipeline.Sample(image=volume)
    params = jax.jit(pipe.init)(jax.random.key(0), sample)
    out = jax.jit(pipe.apply)(params, sample)
    patches = nets.triplanar_patches(volume[..., None], np.array([[1, 2, 3]]), patch_size=10)
    assert out.segmentation.shape == (5, 4, 6) and out.segmentation.dtype == jnp.int32
    assert out.segmentation[1, 2, 3] == int(np.argmax(model(patches)[0]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="mskjax.nets.TriplanarCNN: patch_size 9 is too "
                                         "small.*at least 10"):
        nets.TriplanarCNN(1, 2, patch_size=9, kernel_size=3, rngs=nnx.Rngs(0))
    model = nets.TriplanarCNN(1, 2, patch_size=10, **TINY, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"patches must be \(batch, 3, 10, 10, 1\)"):
        model(jnp.zeros((2, 3, 9, 10, 1)))
    with pytest.raises(ValueError, match=r"volume must be \(batch, X, Y, Z, 1\)"):
        model.segment(jnp.zeros((4, 4, 4, 1)))
    with pytest.raises(ValueError, match="coords must lie inside the volume"):
        nets.triplanar_patches(np.zeros((4, 4, 4, 1)), np.array([[0, 4, 0]]), patch_size=4)
    with pytest.raises(ValueError, match=r"coords must be integer \(n, 3\)"):
        nets.triplanar_patches(np.zeros((4, 4, 4, 1)), np.zeros((2, 3)), patch_size=4)
