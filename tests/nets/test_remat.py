"""Rematerialisation policies of the unrolled nets (E2EVarNet, VarNet, MoDL).

Remat changes what the backward pass stores, never the maths: under every policy the output,
the loss and every gradient equal the no-remat ones to float32 round-off, jitted. The memory
test reads XLA's compiled memory analysis of a jitted gradient, which a policy that does not
rematerialise anything fails.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mskjax import nets, sampling
from mskjax.coils import birdcage_maps, normalize_maps
from mskjax.nets._varnet import REMAT_POLICIES, remat_policy
from tests.conftest import random_complex

SHAPE = (4, 32, 24)  # coils, rows, cols
RTOL = 2e-5  # float32 round-off of a few layers, relative to the largest value

NETS = {
    "e2e-varnet": lambda remat: nets.E2EVarNet(num_cascades=2, sens_chans=2, sens_pools=1,
                                               chans=4, pools=2, remat=remat, rngs=nnx.Rngs(0)),
    "varnet": lambda remat: nets.VarNet(num_steps=3, num_filters=6, kernel_size=5, num_rbf=9,
                                        remat=remat, rngs=nnx.Rngs(0)),
    "modl": lambda remat: nets.MoDL(num_iterations=2, cg_iterations=4, num_layers=3,
                                    features=8, remat=remat, rngs=nnx.Rngs(0)),
}


def example():
    mask, num_low = sampling.equispaced_mask(SHAPE, center_fraction=0.25, acceleration=2,
                                             seed=0)
    kspace = (random_complex(np.random.default_rng(0), SHAPE) * mask).astype(np.complex64)
    maps = np.asarray(normalize_maps(birdcage_maps(SHAPE))).astype(np.complex64)
    return kspace, np.asarray(mask), maps


def _image(name, model, kspace, mask, maps):
    if name == "e2e-varnet":
        return model(kspace, mask)
    return jnp.abs(model(kspace, mask, maps))


def loss_and_grads(name, remat):
    """Jitted ``(loss, gradients)`` of a weighted sum of the net's image."""
    graphdef, state = nnx.split(NETS[name](remat))
    kspace, mask, maps = example()
    weights = np.random.default_rng(1).standard_normal(SHAPE[1:]).astype(np.float32)

    def loss(state):
        return jnp.sum(_image(name, nnx.merge(graphdef, state), kspace, mask, maps) * weights)

    value, grads = jax.jit(jax.value_and_grad(loss))(state)
    return float(value), jax.tree_util.tree_leaves(grads)


def assert_close(out, ref):
    out, ref = np.asarray(out), np.asarray(ref)
    assert out.shape == ref.shape
    err = np.abs(out - ref).max()
    assert err <= RTOL * max(np.abs(ref).max(), 1e-30), f"max diff {err}, max {np.abs(ref).max()}"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NETS))
def test_every_policy_gives_the_loss_and_gradients_of_no_remat(name):
    loss_ref, grads_ref = loss_and_grads(name, "none")
    assert np.isfinite(loss_ref) and any(np.abs(g).max() > 0 for g in grads_ref)
    for policy in REMAT_POLICIES[1:]:
        loss, grads = loss_and_grads(name, policy)
        assert loss == pytest.approx(loss_ref, rel=RTOL, abs=RTOL), policy
        assert len(grads) == len(grads_ref)
        for g, g_ref in zip(grads, grads_ref):
            assert_close(g, g_ref)


def test_true_and_false_mean_cascade_and_none():
    for make in NETS.values():
        assert make(True).remat == "cascade"
        assert make(False).remat == "none"
        assert make("block").remat == "block"
    assert remat_policy(np.bool_(True), "f") == "cascade"


@pytest.mark.parametrize("name", sorted(NETS))
def test_bad_policy_is_refused(name):
    with pytest.raises(ValueError, match=r"remat must be one of .*'blocks'"):
        NETS[name]("blocks")
    with pytest.raises(TypeError, match=r"remat must be one of .*got 1 \(int\)"):
        NETS[name](1)
    with pytest.raises(TypeError, match="remat must be one of"):
        NETS[name](None)


def _temp_bytes(remat, num_cascades=6):
    model = nets.E2EVarNet(num_cascades=num_cascades, sens_chans=2, sens_pools=1, chans=8,
                           pools=1, remat=remat, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    shape = (4, 64, 48)
    mask, _ = sampling.equispaced_mask(shape, center_fraction=0.16, acceleration=4, seed=0)
    kspace = jax.ShapeDtypeStruct(shape, jnp.complex64)

    def loss(state, kspace):
        return jnp.sum(nnx.merge(graphdef, state)(kspace, np.asarray(mask)))

    compiled = jax.jit(jax.grad(loss)).lower(state, kspace).compile()
    return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.slow
def test_remat_reduces_the_compiled_memory_of_the_gradient():
    """XLA's temporary memory for the gradient of a 6-cascade E2E-VarNet (4 x 64 x 48): each
    policy below "none" ("cascade" by more than 30 %), and the nested policy below "block"."""
    temp = {policy: _temp_bytes(policy) for policy in REMAT_POLICIES}
    assert temp["cascade"] < 0.7 * temp["none"], temp
    assert temp["block"] < temp["none"], temp
    assert temp["cascade+block"] < temp["block"], temp


@pytest.fixture(scope="module")
def kset(tmp_path_factory):
    """A tiny multi-coil k-space set (3 simulated knee slices, 4 coils, 40 x 32)."""
    from mskjax.io import make_kspace_set
    from mskjax.sim import knee_section

    root = tmp_path_factory.mktemp("kset")
    base = np.asarray(knee_section((40, 32)))
    images = np.stack([np.roll(base, s, axis=1) for s in range(3)]).astype(np.float32)
    np.savez(root / "images.npz", images=images, subject=np.array(["a", "b", "c"]))
    make_kspace_set(root / "images.npz", root / "set", num_coils=4, seed=0,
                    recon_size=(40, 32), progress=False)
    return root / "set"


@pytest.mark.slow
def test_the_policy_is_stored_and_used_by_train_recon(kset, tmp_path):
    """``mskjax train recon --model e2e-varnet --config remat=...`` trains two steps, stores
    the policy with the checkpoint, and its losses equal those of a run without remat."""
    from mskjax.cli import main
    from mskjax.cli._train_recon import load_trained
    from mskjax.train import read_metrics

    losses = {}
    for policy in ("none", "cascade", "block"):
        out = tmp_path / policy
        code = main(["train", "recon", "--model", "e2e-varnet", "--data", str(kset),
                     "--out", str(out), "--config", "num_cascades=2", "sens_chans=2",
                     "sens_pools=1", "chans=2", "pools=1", f"remat={policy}", "--steps", "2",
                     "--no-progress"])
        assert code == 0
        losses[policy] = [r["loss"] for r in read_metrics(out / "metrics.jsonl")]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["config"]["remat"] == policy
        _, model, config = load_trained(out)
        assert model.remat == policy and config["model"]["kwargs"]["remat"] == policy
    assert len(losses["none"]) == 2 and all(np.isfinite(losses["none"]))
    for policy in ("cascade", "block"):
        np.testing.assert_allclose(losses[policy], losses["none"], rtol=1e-4)


def test_bad_policy_on_the_command_line_is_one_line(kset, tmp_path, capsys):
    from mskjax.cli import main

    code = main(["train", "recon", "--model", "e2e-varnet", "--data", str(kset),
                 "--out", str(tmp_path / "run"), "--config", "remat=blocks", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "remat must be one of" in err and "'blocks'" in err
    assert not (tmp_path / "run").exists()
