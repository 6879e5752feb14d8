"""A stage's run function timed on a copy of a finished run, and whether it writes the same files as that run did.

Takes a finished run (`--source`, e.g. the default run's `work/benchmark`), copies it without the stage's outputs, runs
the stage with a params file's settings exactly as `cgddi run` builds them (its `num_processes` included) and prints
the seconds and how many of the stage's result files differ, byte for byte, from the source run's. A change meant only
to make a stage faster must leave them all equal (on the machine and thread count that made the source run). Run it
once with the code before a change (`PYTHONPATH=<a checkout of it>`) and once after, in the same session: machines of
one kind differ up to 2-3x in speed.

    python bench/stage.py --source work/benchmark --stages 03 04 06

With `--keep-outputs` the copy keeps the stage's outputs, so the stage redoes only what `--set` changed (it resumes, as
a rerun of `cgddi run` with those settings would): what a settings change costs, and which result files it touches.

    python bench/stage.py --source work/benchmark --stages 06 --keep-outputs --set finetune_epochs=30
"""

import argparse, shutil, sys, tempfile, time
import yaml
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from shard import STAGES, config, copy_without  # noqa: E402 (bench/shard.py: the stages' functions and outputs)
from cgddi.run import project_root  # noqa: E402

RESULTS = {  # short name -> the files that hold the stage's results
    "01": ["healthy/**/*.png"],
    "03": ["textual_inversion/**/learned_embeds.safetensors"],
    "04": ["lora/**/*.safetensors"],
    "06": ["classify/predictions/**/*.csv", "classify/external/**/*.csv"],
}


def differing(source: Path, copy: Path, patterns: list) -> tuple[int, int]:
    "(result files compared, how many differ or are missing in `copy`)."
    files = sorted({p.relative_to(source) for pat in patterns for p in source.glob(pat)})
    bad = [f for f in files if not (copy / f).exists() or (copy / f).read_bytes() != (source / f).read_bytes()]
    return len(files), len(bad)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="a finished run's work dir (e.g. the default run's work/benchmark)")
    ap.add_argument("--params", default=str(project_root() / "params" / "default.yaml"))
    ap.add_argument("--stages", nargs="+", default=list(RESULTS), choices=list(RESULTS))
    ap.add_argument("--root", default=None, help="where the copies go (default: a temp folder, removed after)")
    ap.add_argument(
        "--keep-outputs", action="store_true", help="keep the stage's outputs: it redoes what --set changed"
    )
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="stage settings over --params' (YAML)")
    a = ap.parse_args(argv)
    import importlib

    source, root = Path(a.source), Path(a.root or tempfile.mkdtemp(prefix="cgddi-stage-"))
    if bad := [o for o in a.set if "=" not in o]:
        ap.error(f"--set {bad[0]}: give KEY=VALUE")
    over = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in a.set)}
    rows = []
    for short in a.stages:
        stage, module, fn, outputs, _ = STAGES[short]
        work = copy_without(source, root / short, [] if a.keep_outputs else outputs)
        t = time.perf_counter()
        getattr(importlib.import_module(module), fn)(work, config(stage, a.params, **over))
        seconds = time.perf_counter() - t
        rows.append((stage, seconds, *differing(source, work, RESULTS[short])))
        print(f"{stage}: {seconds:.1f} s", flush=True)
        if not a.root:
            shutil.rmtree(work)
    print(f"\ncgddi from {importlib.import_module('cgddi').__file__}; --set {a.set}; outputs kept: {a.keep_outputs}")
    print("| stage | seconds | result files | differing from the source run |\n|---|---|---|---|")
    for stage, seconds, n, bad in rows:
        print(f"| {stage} | {seconds:.1f} | {n} | {bad} |")


if __name__ == "__main__":
    main()
