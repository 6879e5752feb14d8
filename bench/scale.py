"""Paper scale on the CPU side: reading the manifests, one classification run's training set, the leakage kinds,
Table 7, 07's tone fidelity and `cgddi status`, each timed in a fresh process with its peak memory.

Builds (once; `--rebuild` to redo) a copy of a finished benchmark work dir whose manifests are enlarged to the
paper's counts: 309 healthy images (one shard and a review sheet keeping them all), 80,427 lesion-mapped in 309
shards (one per healthy image, with its candidates log of 655 donors), 185,400 semantic in 2,920 shards: 266,136
rows. Every enlarged row copies a row of the source manifest (cycled, deterministic) under a new image name that is
a hard link to the source row's image, so the copy costs inodes, not disk. The DDI table, splits, adapters and
classification runs stay the source's (80 images on the embedded benchmark): only the synthetic side grows.

    python -m cgddi.run run                                # a finished default run: work/benchmark
    python bench/scale.py                                  # builds /tmp/cgddi-scale from it, then times each operation
    python bench/scale.py --ops read_manifests table7      # only some operations
    python bench/scale.py --ops tone_fidelity_all          # the ITA of every image, as 07 measured it before 5a4c91e

Each operation runs in its own process (`--op`): the time is the operation's wall time after the imports, the
memory that process's peak RSS (imports included; the figure after imports is printed beside it).
"""

import argparse, os, resource, shutil, subprocess, sys, time
from pathlib import Path
import pandas as pd

N_HEALTHY, N_LESION_MAPPED, N_SEMANTIC, N_SEMANTIC_SHARDS, N_CANDIDATES = 309, 80_427, 185_400, 2_920, 655
OPS = ["build_index", "read_manifests", "exp1_set", "semantic_set", "leak_kinds", "table7", "tone_fidelity", "status"]
SLOW_OPS = ["tone_fidelity_all"]  # only when named: the ITA of every image (~16 min on 2 cores at 270 images/s)


def _link(src: Path, dst: Path):
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        os.link(src, dst)


def _shards(n_rows: int, n_shards: int) -> list[range]:
    "Row ranges of `n_shards` shards holding `n_rows` rows as evenly as they divide."
    edges = [round(i * n_rows / n_shards) for i in range(n_shards + 1)]
    return [range(a, b) for a, b in zip(edges, edges[1:])]


def build(source: Path, out: Path):
    "The paper-scale copy of `source` in `out` (see the module docstring)."
    t0 = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    skip = {source / "manifest", source / "lesion_map" / "candidates"}
    shutil.copytree(
        source, out, copy_function=os.link, ignore=lambda d, names: [n for n in names if Path(d) / n in skip]
    )
    src = {
        t: pd.concat([pd.read_csv(p) for p in sorted((source / "manifest" / t).glob("[!.]*.csv"))], ignore_index=True)
        for t in ("healthy", "lesion_mapped", "semantic")
    }
    (out / "manifest").mkdir()
    # healthy: 309 images, their base ids cycling over the source's
    h = src["healthy"].iloc[[i % len(src["healthy"]) for i in range(N_HEALTHY)]].reset_index(drop=True)
    h_images = [f"healthy/scale/{i:06d}.png" for i in range(N_HEALTHY)]
    for s, d in zip(h.image, h_images):
        _link(out / s, out / d)
    h = h.assign(image=h_images)
    (out / "manifest" / "healthy").mkdir()
    h.to_csv(out / "manifest" / "healthy" / "all.csv", index=False)
    sheet = pd.read_csv(source / "healthy" / "review.csv")
    sheet = sheet.iloc[[i % len(sheet) for i in range(N_HEALTHY)]].assign(
        image=h_images, keep=True, ddi_id=list(h.base_id)
    )
    # the copy's review.csv is a hard link to the source's: a new file, or writing it would rewrite the source's sheet
    (out / "healthy" / "review.csv").unlink()
    sheet.to_csv(out / "healthy" / "review.csv", index=False)
    # lesion-mapped: one shard per healthy image, with its candidates log
    lm, log_src = src["lesion_mapped"], pd.read_csv(next((source / "lesion_map" / "candidates").glob("[!.]*.csv")))
    (out / "manifest" / "lesion_mapped").mkdir()
    (out / "lesion_map" / "candidates").mkdir(parents=True)
    for k, rows in enumerate(_shards(N_LESION_MAPPED, N_HEALTHY)):
        part = lm.iloc[[i % len(lm) for i in rows]].reset_index(drop=True)
        images = [f"lesion_mapped/scale/{k:06d}/{i:06d}.png" for i in rows]
        for s, d in zip(part.image, images):
            _link(out / s, out / d)
        part = part.assign(image=images, base_id=h.base_id[k], tone=h.tone[k])
        part.to_csv(out / "manifest" / "lesion_mapped" / f"{k:06d}.csv", index=False)
        log = log_src.iloc[[i % len(log_src) for i in range(N_CANDIDATES)]].reset_index(drop=True)
        placed = log.index < len(part)
        log = log.assign(
            base_id=h.base_id[k],
            status=["placed" if p else "skipped" for p in placed],
            image=[images[i] if p else None for i, p in enumerate(placed)],
        )
        log.to_csv(out / "lesion_map" / "candidates" / f"{k:06d}.csv", index=False)
    # semantic: 2,920 shards
    sem = src["semantic"]
    (out / "manifest" / "semantic").mkdir()
    for k, rows in enumerate(_shards(N_SEMANTIC, N_SEMANTIC_SHARDS)):
        part = sem.iloc[[i % len(sem) for i in rows]].reset_index(drop=True)
        images = [f"semantic/scale/{k:05d}/{i:06d}.png" for i in rows]
        for s, d in zip(part.image, images):
            _link(out / s, out / d)
        part.assign(image=images).to_csv(out / "manifest" / "semantic" / f"shared__scale-{k:05d}.csv", index=False)
    (out / ".scale-done").write_text("ok")
    print(
        f"built {out}: {N_HEALTHY} healthy, {N_LESION_MAPPED} lesion-mapped, {N_SEMANTIC} semantic rows "
        f"({time.perf_counter() - t0:.0f} s)"
    )


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_op(op: str, work: Path, params: Path):
    "Time one operation in this process; print its line."
    from cgddi import manifest, classify, fairness, leakage, run
    from cgddi.classify import ClassifyConfig, EXPERIMENTS

    base = _rss_gib()
    # the paper's rules
    cfg = ClassifyConfig(max_synthetic=None, min_train_samples=10, experiments=["exp1", "semantic"])

    def training_set(experiment):
        run_ = ("faithful", 36, experiment, "baseline")
        h = classify.run_hash(work, cfg, run_)
        data = classify._split_data(work, "faithful", 36)
        syn, facts = classify._synthetic(work, EXPERIMENTS[experiment][0], run_, cfg, data)
        return f"{len(syn):,} synthetic training images (hash {h})"

    def leak():
        rows = pd.concat(manifest.read_manifests(work).values(), ignore_index=True)
        split = classify.read_split(work, "faithful", 36)
        kinds = leakage.leak_kinds(rows, split.ddi_id[split.split == "test"], leakage.adapter_train_ids(work))
        return f"{len(rows):,} rows, {int((kinds != '').sum()):,} tied to the test set"

    def fidelity(max_images):
        f, bounds = fairness.tone_fidelity(work, max_images, seed=0)
        syn = f[f.type != "real"]
        of = int(syn.groupby(["type", "tone"]).n_of.first().sum())
        return f"ITA of {(f.type == 'real').sum():,} real and {len(syn):,} of {of:,} synthetic images"

    def build_index():
        for p in (work / "manifest").rglob(".index*"):
            p.unlink()
        if not hasattr(manifest, "index_manifest"):
            return "no index in this version: a plain read"
        return ", ".join(f"{t}: {len(manifest.index_manifest(work, t)):,}" for t in manifest.SYNTHETIC_TYPES)

    ops = {
        "build_index": build_index,
        "read_manifests": lambda: ", ".join(f"{t}: {len(m):,}" for t, m in manifest.read_manifests(work).items()),
        "exp1_set": lambda: training_set("exp1"),
        "semantic_set": lambda: training_set("semantic"),
        "leak_kinds": leak,
        "table7": lambda: f"{fairness.tone_count_table(work).shape} table",
        # 07's tone fidelity at its default sample, and of every image
        "tone_fidelity": lambda: fidelity(fairness.FairnessConfig().tone_fidelity_max_images),
        "tone_fidelity_all": lambda: fidelity(None),
        "status": lambda: f"{len(run.status(params, work))} stages",
    }
    t0 = time.perf_counter()
    what = ops[op]()
    print(
        f"{op:15s} {time.perf_counter() - t0:8.2f} s  peak {_rss_gib():5.2f} GiB (after imports {base:4.2f})  {what}",
        flush=True,
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--source", type=Path, default=Path("work/benchmark"), help="a finished benchmark work dir")
    ap.add_argument("--out", type=Path, default=Path("/tmp/cgddi-scale"), help="where the paper-scale copy goes")
    ap.add_argument("--params", type=Path, default=Path("params/default.yaml"), help="params file for cgddi status")
    ap.add_argument("--ops", nargs="+", default=OPS, choices=OPS + SLOW_OPS)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--op", choices=OPS + SLOW_OPS, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.op:
        return run_op(a.op, a.out, a.params)
    if not (a.source / "classify").exists():
        sys.exit(f"{a.source}: not a finished run (no classify/); run `cgddi run` first or give --source.")
    if a.rebuild or not (a.out / ".scale-done").exists():
        build(a.source, a.out)
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {a.out}")
    for op in a.ops:
        subprocess.run(
            [sys.executable, __file__, "--op", op, "--out", str(a.out), "--params", str(a.params)], check=True
        )


if __name__ == "__main__":
    main()
