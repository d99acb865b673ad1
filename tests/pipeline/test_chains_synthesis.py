"""The issue-13 nets as pipeline stages, chained with each other's neighbours in one jit:
undersample -> GANCS -> segmentation; thick slices -> tricubic -> DeepResolve; MR contrasts ->
pseudo-CT -> bone above a HU threshold; low-dose sinogram -> FBP -> RED-CNN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax import coils, linop, nets, pipeline, recon, sampling, sim
from mskjax.fourier import fft2c


def _kspace(key, shape=(24, 24), num_coils=4):
    k1, k2 = jax.random.split(key)
    image = (jax.random.normal(k1, shape) + 1j * jax.random.normal(k2, shape)).astype(
        jnp.complex64)
    maps = jnp.asarray(coils.birdcage_maps((num_coils, *shape)), jnp.complex64)
    return fft2c(maps * image), maps


def test_undersample_gancs_segment_is_one_jitted_function():
    kspace, maps = _kspace(jax.random.key(0))
    mask, _ = sampling.equispaced_mask(kspace.shape, center_fraction=0.25, acceleration=3,
                                       seed=0)
    generator = nets.GANCSGenerator(num_blocks=1, features=4, cg_iterations=5,
                                    rngs=nnx.Rngs(0))
    segmenter = nets.Segmenter(nets.UNet(1, 3, chans=4, num_pool_layers=1, rngs=nnx.Rngs(1)),
                               output="labels")
    pipe = pipeline.chain(pipeline.undersample(mask), nets.stage(generator),
                          pipeline.map_field(jnp.abs, source="image"), nets.stage(segmenter))
    sample = pipeline.Sample(kspace=kspace, maps=maps)
    params = pipe.init(jax.random.key(0), sample)
    out = jax.jit(pipe.apply)(params, sample)
    undersampled = linop.apply_mask(jnp.asarray(mask), kspace)
    image = generator(undersampled, jnp.asarray(mask), maps)
    np.testing.assert_allclose(np.asarray(out.image), np.abs(np.asarray(image)), rtol=1e-4,
                               atol=1e-4 * float(jnp.max(jnp.abs(image))))
    labels = segmenter(jnp.abs(image)[None, ..., None])
    assert out.segmentation.shape == (24, 24) and out.segmentation.dtype == jnp.int32
    assert np.mean(np.asarray(out.segmentation) == np.asarray(nets.predict_labels(labels))[0]) \
        > 0.99


def test_thick_slice_tricubic_deepresolve_chain():
    volume = jax.random.uniform(jax.random.key(1), (8, 12, 10))
    net = nets.DeepResolve(depth=2, features=4, rngs=nnx.Rngs(0))

    def thick_then_tricubic(v):
        return recon.tricubic_upsample(sim.thick_slice(v, factor=2, axis=0), factor=2, axis=0)

    pipe = pipeline.chain(pipeline.map_field(thick_then_tricubic, source="image"),
                          nets.stage(net))
    sample = pipeline.Sample(image=volume, target=volume)
    out = jax.jit(pipe.apply)(pipe.init(jax.random.key(0), sample), sample)
    expected = net(thick_then_tricubic(volume)[None, ..., None])[0, ..., 0]
    np.testing.assert_allclose(np.asarray(out.image), np.asarray(expected), atol=1e-5)
    assert out.image.shape == volume.shape


def test_pseudo_ct_then_bone_threshold_chain():
    example = sim.pseudo_ct_example(jax.random.key(2), shape=(8, 48, 48), realistic=False,
                                    deform=False, jitter=0.0)
    net = nets.UNet(example.mr.shape[-1], 1, chans=4, num_pool_layers=1, rngs=nnx.Rngs(0))
    pipe = pipeline.chain(
        nets.stage(net),
        pipeline.map_field(lambda x: (1000.0 * x >= 200.0).astype(jnp.int32), source="image",
                           target="segmentation"))
    sample = pipeline.Sample(image=example.mr)
    out = jax.jit(pipe.apply)(pipe.init(jax.random.key(0), sample), sample)
    hu = 1000.0 * net(example.mr[None])[0, ..., 0]
    assert out.image.shape == example.mr.shape[:-1]
    np.testing.assert_array_equal(np.asarray(out.segmentation), np.asarray(hu >= 200.0))


def test_low_dose_fbp_red_cnn_chain():
    image = sim.attenuation_map(sim.knee_phantom(jax.random.key(3), shape=(32, 32, 32)).labels[16])
    angles = jnp.linspace(0.0, jnp.pi, 48, endpoint=False)
    radon = linop.Radon(image.shape, angles)
    sinogram = sim.low_dose_sinogram(jax.random.key(4), radon(image) * 0.5,
                                     incident_photons=1e4, dose_fraction=0.25)
    net = nets.REDCNN(features=4, kernel_size=3, rngs=nnx.Rngs(0))

    def fbp(p):
        return recon.filtered_back_projection(p, angles, shape=image.shape, pixel_size=0.5)

    pipe = pipeline.chain(pipeline.map_field(fbp, source="extra", target="image"),
                          nets.stage(net))
    sample = pipeline.Sample(extra=sinogram, target=image)
    out = jax.jit(pipe.apply)(pipe.init(jax.random.key(0), sample), sample)
    expected = net(fbp(sinogram)[None, ..., None])[0, ..., 0]
    np.testing.assert_allclose(np.asarray(out.image), np.asarray(expected), atol=1e-5)


@pytest.mark.parametrize("net_factory, image, message", [
    (lambda: nets.DeepResolve(depth=2, features=2, rngs=nnx.Rngs(0)), jnp.zeros((8, 8)),
     "DeepResolve"),
    (lambda: nets.REDCNN(features=2, kernel_size=3, rngs=nnx.Rngs(0)),
     jnp.zeros((16, 16), jnp.complex64), "REDCNN"),
])
def test_stage_refuses_images_of_the_wrong_form(net_factory, image, message):
    stage = nets.stage(net_factory())
    sample = pipeline.Sample(image=image)
    with pytest.raises(ValueError, match=message):
        stage.apply(stage.init(jax.random.key(0), sample), sample)
    with pytest.raises(ValueError, match="no image"):
        stage.apply(stage.init(jax.random.key(0), sample), pipeline.Sample())
