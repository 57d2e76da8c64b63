import pytest

from core.runtime import registry
from tests.core import declared_workers


@pytest.fixture
def declared_worker():
    """DeclaredWorker (tests/core/declared_workers.py) in the registry for one test."""
    worker = registry.register(declared_workers.WORKER)
    assert not worker.built
    yield worker
    registry.unregister(worker.name)
