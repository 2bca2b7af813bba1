import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests share one cache dir per run (built host library, ViT, tokens), never the user's."""
    if "NTC_EXPORT_CACHE" not in os.environ:
        base = tmp_path_factory.getbasetemp()
        if os.environ.get("PYTEST_XDIST_WORKER"):  # one cache for every worker of the run (writes are atomic)
            base = base.parent
        os.environ["NTC_EXPORT_CACHE"] = str(base / "ntc-cache")
    yield


def pytest_configure(config):
    """Under pytest-xdist, each worker's torch takes its share of the cores, not all of them (two workers on two
    cores would otherwise run four compute threads)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
