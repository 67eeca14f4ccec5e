import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny volumes: one intra-op thread is as fast, and does not spin against other work on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
