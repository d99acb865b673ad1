import numpy as np
import pytest


@pytest.fixture(scope="session")
def brain_sigpy(shared_data):
    """The sigpy tutorial's Poisson-undersampled 8-channel brain and sigpy ESPIRiT maps."""
    import sigpy.mri

    kspace = np.load(shared_data / "brain_8ch_sigpy" / "cartesian_ksp.npy")
    maps = sigpy.mri.app.EspiritCalib(kspace, show_pbar=False).run().astype(np.complex64)
    return kspace, maps
