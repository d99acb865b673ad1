"""Loading fastMRI PyTorch weights: configuration inference, layouts, checkpoints, errors.

The numerical equality of the loaded nets with PyTorch is tested in test_unet.py and
test_e2e_varnet.py; here the weights themselves are compared, exactly.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from flax import nnx

from mskjax import nets

torch = pytest.importorskip("torch")
fastmri_models = pytest.importorskip("fastmri.models")

VARNET = dict(num_cascades=3, sens_chans=2, sens_pools=1, chans=3, pools=2)


def numpy_state(module):
    return {name: value.numpy() for name, value in module.state_dict().items()}


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return fastmri_models.Unet(3, 5, chans=2, num_pool_layers=2)


@pytest.fixture(scope="module")
def varnet():
    torch.manual_seed(1)
    model = fastmri_models.VarNet(**VARNET)
    with torch.no_grad():
        for i, cascade in enumerate(model.cascades):
            cascade.dc_weight.fill_(0.5 + i)
    return model


def assert_same_weights(state, reference):
    assert set(state) == set(reference)
    for name, value in reference.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)


def test_unet_configuration_and_layouts(unet):
    model = nets.load_fastmri(unet.state_dict())
    assert isinstance(model, nets.UNet)
    assert (model.in_chans, model.out_chans, model.chans, model.num_pool_layers) == (3, 5, 2, 2)
    weight = unet.state_dict()["down_sample_layers.1.layers.0.weight"].numpy()  # (out, in, h, w)
    np.testing.assert_array_equal(model.down[1].kernel1[...], weight.transpose(2, 3, 1, 0))
    weight = unet.state_dict()["up_transpose_conv.0.layers.0.weight"].numpy()  # (in, out, h, w)
    np.testing.assert_array_equal(model.up_transpose[0].kernel[...], weight.transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(model.head_bias[...], unet.state_dict()["up_conv.1.1.bias"])
    assert_same_weights(nets.to_fastmri_state_dict(model), numpy_state(unet))


def test_varnet_configuration_and_round_trip(varnet):
    model = nets.load_fastmri(numpy_state(varnet))
    assert isinstance(model, nets.E2EVarNet)
    assert {k: getattr(model, k) for k in VARNET} == VARNET and model.mask_center
    np.testing.assert_array_equal(model.cascades.dc_weight[...], [0.5, 1.5, 2.5])
    back = nets.to_fastmri_state_dict(model)
    assert_same_weights(back, numpy_state(varnet))
    fresh = fastmri_models.VarNet(**VARNET)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
    assert not nets.load_fastmri(varnet.state_dict(), mask_center=False).mask_center


def test_checkpoints_and_files(varnet, unet, tmp_path):
    state = varnet.state_dict()
    lightning = {"epoch": 3, "state_dict": {**{f"varnet.{k}": v for k, v in state.items()},
                                            "loss.w": torch.ones(1, 1, 7, 7)}}
    assert_same_weights(nets.to_fastmri_state_dict(nets.load_fastmri(lightning)),
                        numpy_state(varnet))
    path = tmp_path / "varnet.pt"
    torch.save(lightning, path)
    assert_same_weights(nets.to_fastmri_state_dict(nets.load_fastmri(path)), numpy_state(varnet))
    path = tmp_path / "unet.pth"
    torch.save({f"unet.{k}": v for k, v in unet.state_dict().items()}, path)
    assert_same_weights(nets.to_fastmri_state_dict(nets.load_fastmri(str(path))),
                        numpy_state(unet))

    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"mskjax.nets.load_fastmri: cannot read '.*bad.pt'"):
        nets.load_fastmri(bad)
    with pytest.raises(FileNotFoundError):
        nets.load_fastmri(tmp_path / "missing.pt")


def test_a_path_needs_torch_a_numpy_state_dict_does_not(unet, tmp_path, monkeypatch):
    weights = numpy_state(unet)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match="pip install torch"):
        nets.load_fastmri(tmp_path / "unet.pt")
    assert isinstance(nets.load_fastmri(weights), nets.UNet)


def test_missing_and_unexpected_keys_are_named(varnet, unet):
    state = numpy_state(varnet)
    del state["cascades.1.model.unet.up_conv.0.layers.4.weight"]
    with pytest.raises(ValueError, match=r"missing keys \['cascades.1.model.unet.up_conv.0."
                                         r"layers.4.weight'\], unexpected keys \[\]"):
        nets.load_fastmri(state)
    state = numpy_state(unet)
    state["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"mskjax.nets.load_fastmri: the state dict does not "
                                         r"match a fastMRI Unet .*unexpected keys "
                                         r"\['extra.weight'\]"):
        nets.load_fastmri(state)
    state = numpy_state(unet)
    del state["up_conv.1.1.bias"]
    with pytest.raises(ValueError, match=r"missing keys \['up_conv.1.1.bias'\]"):
        nets.load_fastmri(state)


def test_other_architectures_and_bad_values(unet):
    other = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"mskjax.nets.load_fastmri: not a fastMRI Unet or VarNet "
                                         r"state dict: .*got 4 keys starting \['0.bias'"):
        nets.load_fastmri(other.state_dict())
    state = numpy_state(unet)
    state["down_sample_layers.1.layers.4.weight"] = np.zeros((4, 4, 5, 5), np.float32)
    with pytest.raises(ValueError, match=r"'down_sample_layers.1.layers.4.weight' has shape "
                                         r"\(5, 5, 4, 4\) after conversion, the net expects "
                                         r"\(3, 3, 4, 4\)"):
        nets.load_fastmri(state)
    state = numpy_state(unet)
    state["conv.layers.0.weight"] = state["conv.layers.0.weight"].astype(np.int32)
    with pytest.raises(TypeError, match="'conv.layers.0.weight' must hold floating-point"):
        nets.load_fastmri(state)
    with pytest.raises(TypeError, match="expected a state dict"):
        nets.load_fastmri([1, 2])
    with pytest.raises(TypeError, match="mskjax.nets.to_fastmri_state_dict: expected a 2D UNet"):
        nets.to_fastmri_state_dict(nets.UNet(1, 1, chans=2, num_pool_layers=1, ndim=3,
                                             rngs=nnx.Rngs(0)))


def test_dropout_rate_and_random_streams(unet):
    model = nets.load_fastmri(unet.state_dict(), drop_prob=0.25, rngs=nnx.Rngs(3))
    assert model.down[0].dropout.rate == 0.25
    assert nnx.state(model, nnx.RngKey)  # dropout has its random streams
    plain = nets.load_fastmri(unet.state_dict())
    assert not nnx.state(plain, nnx.Not(nnx.Param))  # only weights
