import pytest

from utils.data import load_mnist, raw_dir


@pytest.fixture(scope="session")
def mnist():
    """The real MNIST, prepared (fetched if missing) in the default data folder."""
    return load_mnist(log=lambda message: None)


@pytest.fixture(scope="session")
def real_raw_dir(mnist):
    return raw_dir()
