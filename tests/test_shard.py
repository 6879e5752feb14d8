"""01, 03, 04 and 06 over processes (`cgddi.shard`): two CPU processes, one killed right after a known number of
finished
items, then a restart in one process: what was finished is not redone, and the tables equal those of one process."""

import dataclasses, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import torch
import pandas as pd
import pytest
from PIL import Image
from safetensors.torch import load_file
from cgddi.shard import write_config, _free_port
from cgddi.manifest import read_manifest
from conftest import TINY_TI, TINY_LORA

_DYING = """import importlib, os, signal, sys
import torch.distributed as dist
from cgddi.shard import stage_cli
module, item, stage, config, after = sys.argv[1:6]
mod = importlib.import_module(module)
finish, finished = getattr(mod, item), []
def dying(*args, **kwargs):  # process 1 dies (SIGKILL) right after finishing its `after`-th item
    out = finish(*args, **kwargs); finished.append(1)
    if dist.is_initialized() and dist.get_rank() == 1 and len(finished) == int(after):
        os.kill(os.getpid(), signal.SIGKILL)
    return out
setattr(mod, item, dying)
sys.exit(stage_cli(getattr(mod, stage), getattr(mod, config), sys.argv[6:]))
"""


def _killed_launch(module, item, stage, config, work, cfg, tmp_path, after=1):
    """Launch `stage` in two processes; process 1 is killed after finishing `after` items (patched `item`), which stops
    the launch."""
    script = tmp_path / "dying.py"
    script.write_text(_DYING)
    cmd = [
        str(Path(sys.executable).parent / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--main_process_port",
        str(_free_port()),
        "--num_cpu_threads_per_process",
        str(max(1, torch.get_num_threads() // 2)),
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(script),
        module,
        item,
        stage,
        type(cfg).__name__,
        str(after),
        "--work-dir",
        str(work),
        "--config",
        str(write_config(cfg, tmp_path / "cfg.json")),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    # stopped by process 1's death, not by an error
    assert out.returncode != 0 and "Signal 9 (SIGKILL)" in out.stderr, out.stderr[-3000:]


def _without(src, dst, *parts):
    "A copy of work dir `src` without the folders `parts`."
    work = Path(shutil.copytree(src, dst))
    for p in parts:
        shutil.rmtree(work / p)
    return work


def _mtimes(files) -> dict:
    return {p: p.stat().st_mtime_ns for p in files}


def _same_table(a, b, ignore=()):
    "Two CSV tables equal: text and counts exactly, floats to float32 noise (processes run on fewer threads)."
    a, b = (pd.read_csv(p).drop(columns=list(ignore)) for p in (a, b))
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-4, atol=1e-6)


def test_healthy_two_processes_killed_then_one(healthy_work, tmp_path):
    from cgddi.healthy import HealthyConfig, make_healthy

    work = _without(healthy_work, tmp_path / "w", "healthy", "manifest/healthy")
    cfg = HealthyConfig(backend="opencv", num_processes=2)  # healthy_work's settings
    _killed_launch("cgddi.healthy", "_heal_batch", "make_healthy", "HealthyConfig", work, cfg, tmp_path, after=3)
    done = _mtimes((work / "healthy" / "images").glob("[!.]*.png"))  # not the temp file a killed process may leave
    n = len(pd.read_csv(healthy_work / "healthy" / "review.csv"))
    assert 3 <= len(done) < n and not (work / "healthy" / "review.csv").exists()
    sheet = make_healthy(work, dataclasses.replace(cfg, num_processes=1))  # restarted with another number of processes
    assert len(sheet) == n and _mtimes(done) == done  # finished images are not made again
    _same_table(work / "healthy" / "review.csv", healthy_work / "healthy" / "review.csv")
    pd.testing.assert_frame_equal(
        read_manifest(work, "healthy", kept_only=False), read_manifest(healthy_work, "healthy", kept_only=False)
    )
    for p in sheet.image:
        assert np.array_equal(np.asarray(Image.open(work / p)), np.asarray(Image.open(healthy_work / p))), p


@pytest.mark.parametrize(
    "module, item, stage, folder, facts, weights",
    [
        (
            "cgddi.textual_inversion",
            "_token",
            "train_textual_inversion",
            "textual_inversion",
            "ti.json",
            "learned_embeds.safetensors",
        ),
        ("cgddi.lora", "_adapter", "train_loras", "lora", "lora.json", "pytorch_lora_weights.safetensors"),
    ],
    ids=["textual_inversion", "lora"],
)
def test_tokens_and_adapters_two_processes_killed_then_one(
    lora_work, tmp_path, module, item, stage, folder, facts, weights
):
    import importlib

    mod = importlib.import_module(module)
    cfg = (
        mod.TIConfig(**TINY_TI, num_processes=2)
        if folder == "textual_inversion"
        else mod.LoRAConfig(**TINY_LORA, num_processes=2)
    )
    work = _without(lora_work, tmp_path / "w", *dict.fromkeys([folder, "lora"]))  # tokens: their adapters go too
    _killed_launch(module, item, stage, type(cfg).__name__, work, cfg, tmp_path)
    done = _mtimes((work / folder).rglob(facts))
    ref = lora_work / folder / "shared"
    n = len(pd.read_csv(ref / "concepts.csv"))
    assert 1 <= len(done) < n and not (work / folder / "shared" / "concepts.csv").exists()
    # restarted with another number of processes
    out = getattr(mod, stage)(work, dataclasses.replace(cfg, num_processes=1))
    assert len(out) == n and _mtimes(done) == done  # finished ones are not trained again
    # `model`: each work dir's tiny model
    _same_table(work / folder / "shared" / "concepts.csv", ref / "concepts.csv", ignore=["model"])
    for slug in out.disease_slug:
        a, b = (load_file(w / folder / "shared" / slug / weights) for w in (work, lora_work))
        assert a.keys() == b.keys() and all(np.allclose(a[k], b[k], atol=1e-5) for k in a), slug


def test_classify_two_processes_killed_then_one(lora_work, tmp_path):
    from cgddi.classify import ClassifyConfig, run_experiments, read_predictions

    cfg = ClassifyConfig(
        protocols=["faithful", "clean"],
        seeds=[36],
        experiments=["real"],
        real_methods=["baseline", "fairdisco"],
        # two (protocol, seed) groups of two runs
        resize=40,
        crop=32,
        epochs=1,
        device="cpu",
        num_processes=2,
    )
    ref = Path(shutil.copytree(lora_work, tmp_path / "ref"))
    expected = run_experiments(ref, dataclasses.replace(cfg, num_processes=1))
    work = Path(shutil.copytree(lora_work, tmp_path / "w"))
    _killed_launch("cgddi.classify", "run_one", "run_experiments", "ClassifyConfig", work, cfg, tmp_path)
    done = _mtimes((work / "classify" / "predictions").rglob("S*.json"))
    assert 1 <= len(done) < len(expected)
    runs = run_experiments(work, dataclasses.replace(cfg, num_processes=1))
    assert _mtimes(done) == done  # finished runs are not trained again
    key = ["protocol", "experiment", "method", "seed"]
    facts = [r.sort_values(key, ignore_index=True).drop(columns=["seconds"]) for r in (runs, expected)]
    pd.testing.assert_frame_equal(*facts)
    a, b = (read_predictions(w).sort_values(key + ["ddi_id"], ignore_index=True) for w in (work, ref))
    assert (a.y_pred == b.y_pred).all() and np.allclose(a.y_prob, b.y_prob, atol=1e-4)
