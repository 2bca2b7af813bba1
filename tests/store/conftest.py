import pytest
from store_helpers import MODEL, build_reference


@pytest.fixture(scope="session")
def built_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "skimage"
    build_reference(out)
    return out


@pytest.fixture(scope="session")
def module():
    from ntc_export.models import load

    return load(MODEL)
