"""How much of a finding is training noise: 06's runs again under other training seeds, the split seeds kept.

A run's findings (07, `tab_07_findings_<protocol>`) pair each experiment with the baseline or the majority rate split
seed by split seed; their spread mixes two things: which images a split tests, and the training's own randomness
(06's `seed`: initial weights, with the split seed, sampling order, augmentation). This takes a finished run
(`--source`), trains the findings' runs (the real baseline, Exp. 1 and Exp. 2) again with each training seed in
`--train-seeds` on a linked copy of it (the generated images are shared, not made again), and prints per claim:
its mean over the split seeds for each training seed (the figure one run's first screen shows), how far those means
move with the training seed alone, and the mean over every training seed with its 95 % interval (split seeds as the
unit: each split's difference averaged over the training seeds first), beside the issue's bar where it has one; and
how far Exp. 2's fine-tuning went over all those runs (07's `finetune_stops`: epochs run, how often it kept the model
after its first epoch, how often its selection score ended below its Exp. 1 model's).

    python bench/seeds.py --source work/benchmark                          # training seeds 0-9, clean protocol
    python bench/seeds.py --source work/benchmark --train-seeds 0 1 2 --protocols clean faithful

The params file's own training seed (0 in params/default.yaml) repeats that run's findings (same settings, same machine
kind).
"""

import argparse, os, shutil, tempfile, time, warnings
from pathlib import Path
import numpy as np
import pandas as pd
from cgddi.classify import read_predictions, read_runs, run_experiments
from cgddi.fairness import (
    finding_claims,
    finetune_stops,
    majority_rates,
    mean_interval,
    paired_difference,
    per_seed_metrics,
)
from cgddi.run import project_root
from shard import config

BARS = {  # issue 22's "done means", in points: the claim's mean difference should reach these
    ("Exp. 1 (S. only)", "the majority rate"): 10.0,
    ("Exp. 2 (S., then R.)", "Baseline (R.)"): -2.0,
}


def linked_copy(
    source: Path,  # a finished run's work dir
    work: Path,  # where the copy goes (replaced)
) -> Path:
    "The run without its classification outputs, its files hard-linked (06 writes new files, never into old ones)."
    shutil.rmtree(work, ignore_errors=True)
    top = lambda folder, names: ["classify"] if Path(folder) == Path(source) else []  # 06's outputs, left out
    shutil.copytree(source, work, symlinks=True, copy_function=os.link, ignore=top)
    return work


def claim_differences(
    pred: pd.DataFrame,  # `read_predictions` rows of one training seed
    synthetic_method: str,  # 06's synthetic_method
) -> pd.DataFrame:
    "Per protocol, claim and split seed: the paired accuracy difference in points (07's findings, column All)."
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined fairness metrics of a few runs: not what this reads
        per_seed = pd.concat([per_seed_metrics(pred), majority_rates(pred)], ignore_index=True)
    for protocol, ps in per_seed.groupby("protocol", sort=False):
        for name, a, other, b in finding_claims(synthetic_method):
            d = paired_difference(ps, a, b).accuracy
            rows += [
                {"protocol": protocol, "claim": name, "other": other, "split_seed": s, "points": v}
                for s, v in d.items()
            ]
    return pd.DataFrame(rows)


def summary(
    diffs: pd.DataFrame,  # `claim_differences` of every training seed, with a train_seed column
    run_seed: int,  # the training seed of the source run (its params file's)
) -> pd.DataFrame:
    "Per protocol and claim: the training seeds' means over split seeds, their spread, and the pooled interval."
    rows = []
    for (protocol, name, other), d in diffs.groupby(["protocol", "claim", "other"], sort=False):
        per_train = d.groupby("train_seed").points.mean()  # what one run's first screen shows, per training seed
        per_split = d.groupby("split_seed").points.mean()  # each split averaged over the training seeds
        within = d.groupby("split_seed").points.std(ddof=0).mean()  # a split's spread over training seeds alone
        lo, hi = mean_interval(per_split)
        bar = BARS.get((name, other))
        rows.append(
            {
                "protocol": protocol,
                "claim": f"{name} − {other}",
                "training seeds": len(per_train),
                "split seeds": len(per_split),
                f"seed {run_seed} (the run's)": f"{per_train.get(run_seed, np.nan):+.1f}",
                "runs' means, range": f"{per_train.min():+.1f} to {per_train.max():+.1f}",
                "runs' means, std": f"{per_train.std(ddof=0):.1f}",
                "a split's std over training seeds": f"{within:.1f}",
                "all runs, mean": f"{d.points.mean():+.1f}",
                "95 % interval (split seeds)": f"{lo:+.1f} to {hi:+.1f}",
                "bar": "" if bar is None else f"{bar:+.0f}",
                "runs meeting it": "" if bar is None else f"{int((per_train >= bar).sum())}/{len(per_train)}",
            }
        )
    return pd.DataFrame(rows)


def finetune_summary(
    stops: pd.DataFrame,  # `finetune_stops` of every training seed, with protocol and train_seed columns
) -> pd.DataFrame:
    "Per protocol: how far Exp. 2's fine-tuning went over all runs, and how often it kept its first epoch's model."
    return (
        stops.groupby("protocol", sort=False)
        .agg(
            runs=("seed", "size"),
            epochs_run=("epochs_run", "mean"),
            kept_first_epoch=("kept_first_epoch", "sum"),
            selection_below_exp1=("below_exp1", "sum"),
        )
        .reset_index()
        .round(2)
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="a finished run's work dir (e.g. the default run's work/benchmark)")
    ap.add_argument(
        "--params",
        default=str(project_root() / "params" / "default.yaml"),
        help="the params file 06's settings come from (the run's own)",
    )
    ap.add_argument("--train-seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--protocols", nargs="+", default=["clean"], choices=["clean", "faithful"])
    ap.add_argument("--processes", type=int, default=None, help="06's num_processes (default: the params file's)")
    ap.add_argument("--root", default=None, help="where the copies go (default: a temp folder, removed after)")
    a = ap.parse_args(argv)
    source = Path(a.source)
    if not (source / "data" / "ddi.csv").is_file():
        ap.error(f"{source}: no finished run here (no data/ddi.csv); give the work dir of a run that reached 05.")
    root = Path(a.root or tempfile.mkdtemp(prefix="cgddi-seeds-"))
    over = dict(
        protocols=a.protocols, real_methods=["baseline"], experiments=["real", "exp1", "exp2"], external_test=None
    )
    if a.processes:
        over["num_processes"] = a.processes
    frames, stops, run_seed = [], [], config("06_classify", a.params).seed
    for k in a.train_seeds:
        cfg = config("06_classify", a.params, seed=k, **over)
        work = linked_copy(source, root / f"train-seed-{k}")
        t = time.perf_counter()
        run_experiments(work, cfg)
        pred = read_predictions(work)
        frames.append(claim_differences(pred, cfg.synthetic_method).assign(train_seed=k))
        runs = read_runs(work)
        stops += [
            finetune_stops(runs[runs.protocol == p], cfg.synthetic_method).assign(protocol=p, train_seed=k)
            for p in a.protocols
        ]
        print(
            f"training seed {k}: {pred.groupby(['protocol', 'experiment', 'seed']).ngroups} runs in "
            f"{time.perf_counter() - t:.1f} s",
            flush=True,
        )
        if not a.root:
            shutil.rmtree(work)
    if not a.root:
        shutil.rmtree(root)
    diffs = pd.concat(frames, ignore_index=True)
    wide = diffs.pivot_table(index=["protocol", "claim", "other", "split_seed"], columns="train_seed", values="points")
    print("\nPaired accuracy difference (points, column All) per split seed (rows) and training seed (columns):")
    print(wide.round(1).to_markdown())
    print(
        "\nPer claim: the mean over split seeds for each training seed (what one run's first screen shows), its "
        "range and spread over the training seeds, and the mean over all runs with its 95 % interval (each split seed "
        "averaged over the training seeds first, Student's t over the split seeds):"
    )
    print(summary(diffs, run_seed).to_markdown(index=False, disable_numparse=True))
    print("\nExp. 2's fine-tuning on the real images (07's `finetune_stops`), over every split x training seed:")
    print(finetune_summary(pd.concat(stops, ignore_index=True)).to_markdown(index=False))


if __name__ == "__main__":
    main()
