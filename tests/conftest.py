import os

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Tests share one cache dir per run (built host library, ViT, tokens), never the user's."""
    if "NTC_EXPORT_CACHE" not in os.environ:
        os.environ["NTC_EXPORT_CACHE"] = str(tmp_path_factory.mktemp("ntc-cache"))
    yield


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
