"""A stage in one process and in N (`cgddi.shard`): wall time of each, their ratio, and whether the tables agree.

Takes a finished run (`--source`, e.g. the default run's `work/benchmark`), and for each stage named makes two copies
without that stage's outputs, runs the stage with `num_processes: 1` in one and `num_processes: N` in the other (the
stage function launches `accelerate launch` itself), each with the settings a params file gives it, and prints the
seconds, the speed-up and the largest difference between the two runs' tables. On a CPU the processes share the
cores (each gets cores / N threads); on a GPU node each process takes a GPU (several share one when N is larger).

    python bench/shard.py --source work/benchmark                  # 01, 03, 04, 06 (two seeds), 1 vs 2 processes
    python bench/shard.py --source work/benchmark --stages 03 --processes 4
    python bench/shard.py --source /dev/shm/run --make-source     # no finished run here: make one first (00-05)
"""

import argparse, dataclasses, shutil, tempfile, time
from pathlib import Path
import numpy as np
import pandas as pd
from cgddi.run import project_root, stage_parameters, stage_config

STAGES = {  # short name -> (stage notebook, module, function, outputs removed, the table compared)
    "01": ("01_healthy", "cgddi.healthy", "make_healthy", ["healthy", "manifest/healthy"], "healthy/review.csv"),
    "03": (
        "03_textual_inversion",
        "cgddi.textual_inversion",
        "train_textual_inversion",
        ["textual_inversion"],
        "textual_inversion/shared/concepts.csv",
    ),
    "04": ("04_lora", "cgddi.lora", "train_loras", ["lora"], "lora/shared/concepts.csv"),
    "06": ("06_classify", "cgddi.classify", "run_experiments", ["classify"], None),
}


def config(stage: str, params, **over):
    "The stage's config from a params file, as `cgddi run` builds it, with `over` replaced."
    p = stage_parameters(params, stage)
    return dataclasses.replace(
        stage_config(stage)(**{k: v for k, v in p.items() if k not in ("work_dir", "report_dir")}), **over
    )


def largest_difference(a: pd.DataFrame, b: pd.DataFrame) -> str:
    """The largest absolute difference between two tables' numeric columns, and where ('shape' or 'text' when they
    differ so)."""
    if a.shape != b.shape or list(a.columns) != list(b.columns):
        return "shape"
    num = a.select_dtypes("number").columns
    text = [c for c in a.columns if c not in num and c != "model"]  # `model`: each work dir's own path
    if not a[text].fillna("").astype(str).equals(b[text].fillna("").astype(str)):
        return "text"
    if not len(num):
        return "0"
    d = pd.DataFrame(np.abs(a[num].to_numpy(float) - b[num].to_numpy(float)), columns=num).max()
    return "0" if not d.max() > 0 else f"{d.max():.2g} ({d.idxmax()}; {int((d > 0).sum())} columns differ)"


def copy_without(
    source,  # a finished run's work dir
    work: Path,  # where the copy goes (replaced)
    outputs: list,  # the stage's output folders, left out
) -> Path:
    "A copy of a finished run without one stage's outputs, for that stage to run again."
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(source, work, symlinks=True)
    for o in outputs:
        shutil.rmtree(work / o, ignore_errors=True)
    return work


def make_source(
    work: Path,  # the run root to fill
    params,  # the params file
):
    "Stages 00-05 into `work`, each with `params`' settings and resuming as under `cgddi run`, without papermill."
    from cgddi.run import STAGES as RUN_STAGES

    order = list(RUN_STAGES)
    for stage in order[: order.index("05_semantic") + 1]:
        t = time.perf_counter()
        RUN_STAGES[stage].load("run")(work, config(stage, params))
        print(f"source {work}: {stage} {time.perf_counter() - t:.1f} s", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="a finished run's work dir (e.g. the default run's work/benchmark)")
    ap.add_argument(
        "--params",
        default=str(project_root() / "params" / "default.yaml"),
        help="the params file the stages' settings come from",
    )
    ap.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[36, 37],
        help="06: the split seeds to run (all: 70 runs on the default run)",
    )
    ap.add_argument("--root", default=None, help="where the copies go (default: a temp folder, removed after)")
    ap.add_argument(
        "--make-source",
        action="store_true",
        help="first run stages 00-05 into --source with the params file's settings (what they find done is kept): "
        "a machine without a finished run, e.g. the GPU machine (bench/gpu.sh)",
    )
    a = ap.parse_args(argv)
    import importlib

    if a.make_source:
        make_source(Path(a.source), a.params)
    root = Path(a.root or tempfile.mkdtemp(prefix="cgddi-shard-"))
    rows = []
    for short in a.stages:
        stage, module, fn, outputs, table = STAGES[short]
        cfg = config(stage, a.params, **({"seeds": a.seeds} if short == "06" else {}))
        run, seconds, tables = getattr(importlib.import_module(module), fn), {}, {}
        for n in (1, a.processes):
            work = copy_without(a.source, root / f"{short}-{n}", outputs)
            t = time.perf_counter()
            out = run(work, dataclasses.replace(cfg, num_processes=n))
            seconds[n] = time.perf_counter() - t
            tables[n] = (
                pd.read_csv(work / table)
                if table
                else out.drop(columns=["seconds"]).sort_values(
                    ["protocol", "experiment", "method", "seed"], ignore_index=True
                )
            )
            print(f"{stage}: {n} process(es) {seconds[n]:.1f} s", flush=True)
        rows.append(
            (
                stage,
                len(tables[1]),
                seconds[1],
                seconds[a.processes],
                largest_difference(tables[1], tables[a.processes]),
            )
        )
        if not a.root:
            shutil.rmtree(root / f"{short}-1")
            shutil.rmtree(root / f"{short}-{a.processes}")
    print(
        f"\n| stage | items in its table | 1 process s | {a.processes} processes s | speed-up | largest table "
        "difference |\n|---|---|---|---|---|---|"
    )
    for stage, items, one, many, diff in rows:
        print(f"| {stage} | {items} | {one:.1f} | {many:.1f} | {one / many:.2f}x | {diff} |")


if __name__ == "__main__":
    main()
