from pathlib import Path

import pytest

from curation.storage import Storage

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def storage(tmp_path) -> Storage:
    return Storage(str(tmp_path))


@pytest.fixture(scope="session")
def sample_world() -> Path:
    """The embedded sample world at ./data/sample (built by `make`; built here if absent)."""
    from curation.sample.build import build_sample_world

    return build_sample_world(REPO / "data" / "sample", REPO / ".cache" / "debian")
