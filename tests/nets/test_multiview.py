"""MultiViewNet (MRNet layout): against torch (a torchvision ResNet per slice, mean over the
image, max over the slices, concatenation, one linear layer) and against the same computation
done slice by slice with the mskjax backbones; the max over slices (permuting or repeating
slices changes nothing); gradients reach every backbone; the pipeline stage; bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax import nets, pipeline
from tests.nets.torchvision_oracle import (assert_close, import_torchvision, jitted,
                                           load_resnet, randomise_norms, resnet_features,
                                           to_torch, torch)

# (slices, rows, cols) per plane: sagittal, coronal, axial
SIZES = ((3, 16, 16), (2, 20, 16), (4, 16, 18))


def views(batch=2, chans=1, seed=0, sizes=SIZES):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.standard_normal((batch, *s, chans)), jnp.float32)
                 for s in sizes)


def small_resnet(rngs, in_chans=1):
    return nets.ResNet(in_chans, layers=(1,), width=4, norm="group", rngs=rngs)


def compiled(model):
    """``fn(views) -> model(views)``, jitted once (recompiled per shape only)."""
    graphdef, state = nnx.split(model)
    fn = jax.jit(lambda s, v: nnx.merge(graphdef, s)(v))
    return lambda v: fn(state, tuple(v))


def run(model, v):
    return compiled(model)(v)


@pytest.mark.slow
def test_equals_torch_with_a_shared_torchvision_resnet():
    tv = import_torchvision()
    torch.manual_seed(0)
    theirs = randomise_norms(tv.models.resnet.ResNet(tv.models.resnet.BasicBlock, [1, 1, 1, 1],
                                                     num_classes=2)).eval()
    backbone = load_resnet(nets.ResNet(3, layers=(1, 1, 1, 1), rngs=nnx.Rngs(0)), theirs)
    model = nets.MultiViewNet(backbone, task="multiclass", num_classes=4, rngs=nnx.Rngs(1),
                              shared=True)
    model.eval()
    sizes = ((3, 32, 32), (1, 40, 32), (2, 32, 36))
    v = views(batch=2, chans=3, seed=1, sizes=sizes)
    kernel, bias = np.asarray(model.head.kernel[...]), np.asarray(model.head.bias[...])
    expected = []
    with torch.no_grad():
        for b in range(2):
            pooled = [resnet_features(theirs, to_torch(view[b])).mean(dim=(2, 3)).amax(dim=0)
                      for view in v]
            expected.append(torch.cat(pooled).numpy() @ kernel + bias)
    out = run(model, v)
    assert out.shape == (2, 4)
    assert_close(out, np.stack(expected))


def test_equals_slice_by_slice_with_three_backbones():
    model = nets.MultiViewNet(small_resnet, task="ordinal", num_classes=5, rngs=nnx.Rngs(2))
    assert not model.shared and len(model.backbones) == 3
    assert model.out_features == (4, 4, 4) and model.num_outputs == 4
    assert model.plane_slices() == (slice(0, 4), slice(4, 8), slice(8, 12))
    v = views(seed=2)
    out = run(model, v)
    backbones = [jitted(b) for b in model.backbones]
    expected = []
    for b in range(2):
        pooled = []
        for p, view in enumerate(v):
            per_slice = [np.asarray(backbones[p](view[b, s][None]))[0].mean(axis=(0, 1))
                         for s in range(view.shape[1])]
            pooled.append(np.max(per_slice, axis=0))
        expected.append(np.asarray(model.head(jnp.concatenate(pooled)[None, None]))[0])
    assert_close(out, np.stack(expected), rtol=1e-5)
    graphdef, state = nnx.split(model)
    maps = jax.jit(lambda s, v: nnx.merge(graphdef, s).features(v))(state, v)
    assert [m.shape for m in maps] == [(2, 3, 4, 4, 4), (2, 2, 5, 4, 4), (2, 4, 4, 5, 4)]
    np.testing.assert_allclose(model.head_from_features(maps), out, rtol=1e-5, atol=1e-6)
    # the planes have their own weights
    one = v[0][:1, 0]
    assert np.abs(np.asarray(backbones[0](one)) - np.asarray(jitted(model.backbones[1])(one))
                  ).max() > 1e-3


def test_max_over_slices_permuting_or_repeating_slices_changes_nothing():
    model = nets.MultiViewNet(small_resnet, task="binary", rngs=nnx.Rngs(3), shared=True)
    v = views(seed=4)
    run = compiled(model)
    out = run(v)
    permuted = (v[0][:, ::-1], v[1], jnp.roll(v[2], 1, axis=1))
    repeated = (jnp.concatenate([v[0], v[0][:, 1:2]], axis=1), v[1], v[2])
    np.testing.assert_allclose(run(permuted), out, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run(repeated), out, rtol=1e-5, atol=1e-6)
    # a new slice with other content does change it
    other = views(seed=7, sizes=((1, 16, 16),))[0]
    added = (jnp.concatenate([v[0], other], axis=1), v[1], v[2])
    assert np.abs(np.asarray(run(added)) - np.asarray(out)).max() > 1e-4
    # the examples of a batch are independent (group norm; batch norm in eval mode)
    np.testing.assert_allclose(run([x[1:] for x in v]), out[1:], rtol=1e-5, atol=1e-6)


def test_gradients_reach_every_backbone_and_the_head():
    model = nets.MultiViewNet(small_resnet, task="regression", rngs=nnx.Rngs(4))

    def loss(model, v):
        return jnp.sum(model(v) ** 2)

    grads = nnx.jit(nnx.grad(loss))(model, views(seed=5))
    graphdef, _, rest = nnx.split(model, nnx.Param, ...)
    grads = nnx.merge(graphdef, grads, rest)
    for p in range(3):
        g = np.asarray(grads.backbones[p].conv1[...])
        assert np.all(np.isfinite(g)) and np.abs(g).max() > 0
    assert np.abs(np.asarray(grads.head.kernel[...])).max() > 0


def test_pipeline_stage_reads_three_stacks_and_writes_the_label():
    model = nets.MultiViewNet(small_resnet, task="multiclass", num_classes=3, rngs=nnx.Rngs(5),
                              shared=True)
    v = views(batch=1, seed=6)
    sample = pipeline.Sample(image=tuple(x[0, ..., 0] for x in v))
    pipe = pipeline.chain(nets.stage(model))
    params = jax.jit(pipe.init)(jax.random.key(0), sample)
    out = jax.jit(pipe.apply)(params, sample)
    assert out.label.shape == (3,)
    np.testing.assert_allclose(out.label, run(model, v)[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="MultiViewNet: sample.image must be a tuple of three"):
        model.apply_sample(pipeline.Sample(image=v[0][0, ..., 0]))


def test_bad_input_is_named():
    model = nets.MultiViewNet(small_resnet, task="binary", rngs=nnx.Rngs(0), shared=True)
    v = views()
    with pytest.raises(ValueError, match=r"MultiViewNet: views must be three arrays .* got 2"):
        model(v[:2])
    with pytest.raises(ValueError, match=r"MultiViewNet: views must be three arrays .*shapes"):
        model((v[0], v[1], v[2][..., 0]))
    with pytest.raises(ValueError, match="MultiViewNet: the views must have the same batch"):
        model((v[0][:1], v[1], v[2]))
    with pytest.raises(ValueError, match="ResNet: every spatial size must be at least 4"):
        model((v[0][:, :, :3], v[1], v[2]))
    backbone = small_resnet(nnx.Rngs(0))
    with pytest.raises(ValueError, match="needs shared=True"):
        nets.MultiViewNet(backbone, task="binary", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="shared=True takes one backbone"):
        nets.MultiViewNet([backbone] * 3, task="binary", rngs=nnx.Rngs(0), shared=True)
    with pytest.raises(ValueError, match=r"one per plane \('sagittal', 'coronal', 'axial'\)"):
        nets.MultiViewNet([backbone] * 2, task="binary", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="the sagittal backbone must be a 2D backbone"):
        nets.MultiViewNet(lambda r: nets.CNN3D(1, chans=(2,), rngs=r), task="binary",
                          rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="must take the same in_chans"):
        nets.MultiViewNet([backbone, backbone, small_resnet(nnx.Rngs(0), 2)], task="binary",
                          rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="the coronal backbone must be an nnx.Module"):
        nets.MultiViewNet([backbone, "resnet", backbone], task="binary", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="MultiViewNet: task must be one of"):
        nets.MultiViewNet(small_resnet, task="grade", rngs=nnx.Rngs(0))
