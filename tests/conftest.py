import os, shutil

# no machine here reaches a hub: fail at once instead of retrying for minutes
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# under pytest-xdist (pyproject's addopts: 2 workers) the workers already fill the cores: one thread each, and for the
# processes they start (papermill kernels, `cgddi run`, accelerate launches); two 2-thread OpenMP pools on 2 cores
# spin against each other
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
import pytest
from cgddi.benchmark import make_benchmark


@pytest.fixture(scope="session")
def benchmark_root(tmp_path_factory):
    "A small embedded benchmark shared (read-only) by the tests."
    return make_benchmark(tmp_path_factory.mktemp("bench") / "ddi", seed=3, n_images=40)


@pytest.fixture
def bench_copy(benchmark_root, tmp_path):
    "A private copy of the benchmark that a test may break."
    return shutil.copytree(benchmark_root, tmp_path / "ddi")


@pytest.fixture(scope="session")
def healthy_work(benchmark_root, tmp_path_factory):
    "A work_dir with 00_data's outputs and an opencv healthy set (read-only: copy it before changing it)."
    from cgddi.data import load_ddi, write_data
    from cgddi.healthy import make_healthy, HealthyConfig

    work = tmp_path_factory.mktemp("work")
    write_data(load_ddi(benchmark_root), work)
    make_healthy(work, HealthyConfig(backend="opencv"))
    return work


@pytest.fixture
def work_copy(healthy_work, tmp_path):
    "A private copy of `healthy_work` that a test may change."
    return shutil.copytree(healthy_work, tmp_path / "work")


TINY_TI = dict(resolution=32, steps=2, batch_size=2)  # the tokens and adapters of `lora_work`
TINY_LORA = dict(rank=2, resolution=32, steps=2, batch_size=2)


@pytest.fixture(scope="session")
def lora_work(healthy_work, tmp_path_factory):
    """healthy_work plus a split, tiny tokens and tiny adapters, each trained in one process (read-only: copy it before
    changing it)."""
    from cgddi.data import read_data, write_splits
    from cgddi.textual_inversion import TIConfig, train_textual_inversion
    from cgddi.lora import LoRAConfig, train_loras

    work = shutil.copytree(healthy_work, tmp_path_factory.mktemp("lora") / "work")
    write_splits(read_data(work), work, seeds=[36])
    train_textual_inversion(work, TIConfig(**TINY_TI))
    train_loras(work, LoRAConfig(**TINY_LORA))
    return work
