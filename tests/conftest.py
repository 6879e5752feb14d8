import shutil
import pytest
from cgddi.data import make_benchmark

@pytest.fixture(scope="session")
def benchmark_root(tmp_path_factory):
    "A small embedded benchmark shared (read-only) by the tests."
    return make_benchmark(tmp_path_factory.mktemp("bench")/"ddi", seed=3, n_images=40)

@pytest.fixture
def bench_copy(benchmark_root, tmp_path):
    "A private copy of the benchmark that a test may break."
    return shutil.copytree(benchmark_root, tmp_path/"ddi")
