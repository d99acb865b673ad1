"""Neural networks in flax.nnx: the fastMRI U-Net, unrolled reconstruction nets, their blocks,
segmentation nets (SegNet, the triplanar CNN, any net through ``Segmenter``), sliding-window
inference, and classifiers (``Classifier``: a backbone, ``ResNet``, ``DenseNet`` or ``CNN3D``,
with a ``ClassifierHead``; ``MultiViewNet`` for three planes of slices in the MRNet layout).

Conventions: channels-last with a leading batch axis, ``(batch, *spatial, channels)``, float32
(complex images enter as two channels, real then imaginary). Physics inputs (k-space, mask,
coil maps) are call arguments and follow the library's one-example layout ``(coils, *spatial)``;
the reconstruction nets take one example and batch with ``jax.vmap``. Every data-consistency
step goes through :mod:`mskjax.linop` and :mod:`mskjax.solvers`. For speed in loops, split a
net with ``flax.nnx.split`` and jit a pure function of its state.
"""

from ._activation_maps import class_activation_map, features_and_head, grad_cam
from ._blocks import ConvBlock, TransposeConvBlock, avg_pool, instance_norm
from ._classifier import (TASKS, Classifier, ClassifierHead, class_probabilities,
                          predict_class)
from ._cnn3d import CNN3D
from ._conv import conv, conv_transpose
from ._deepresolve import DeepResolve
from ._densenet import DenseNet
from ._discriminator import PatchDiscriminator
from ._gancs import GANCSGenerator
from ._e2e_varnet import E2EVarNet, NormUNet
from ._fastmri_weights import load_fastmri, to_fastmri_state_dict
from ._modl import MoDL
from ._multiview import MultiViewNet
from ._red_cnn import REDCNN
from ._resnet import ResNet
from ._segmentation import Segmenter, predict_labels
from ._segnet import SegNet, max_pool_with_indices, max_unpool
from ._sliding_window import sliding_window_inference
from ._stage import NetStage, stage
from ._triplanar import TriplanarCNN, triplanar_patches
from ._unet import UNet
from ._varnet import VarNet

__all__ = ["conv", "conv_transpose", "instance_norm", "avg_pool", "ConvBlock",
           "TransposeConvBlock", "UNet", "NormUNet", "E2EVarNet", "load_fastmri",
           "to_fastmri_state_dict", "stage", "NetStage", "VarNet", "MoDL", "PatchDiscriminator",
           "GANCSGenerator",
           "SegNet", "max_pool_with_indices", "max_unpool", "TriplanarCNN", "triplanar_patches",
           "sliding_window_inference", "Segmenter", "predict_labels", "TASKS", "Classifier",
           "ClassifierHead", "class_probabilities", "predict_class", "class_activation_map",
           "grad_cam", "features_and_head", "ResNet", "DenseNet", "CNN3D", "MultiViewNet",
           "DeepResolve", "REDCNN"]
