"""Peak memory of a whole `cgddi run`: the runner, each stage's kernel and every process a stage starts, summed.

Runs `cgddi run` with a params file on a fresh work dir (a copy of the params with `work_dir` in a temp folder, its
other relative paths made absolute), or with `--source` on a copy of a finished run without the outputs of the stages
named (01, 03, 04 or 06, as `bench/shard.py` knows them: 06 is where the default run peaks). It samples the process
tree every `--interval` seconds and prints the peak of the summed PSS (each shared page split among the processes
mapping it: what the tree takes from the machine) and of the summed RSS (shared pages counted once per process: an
upper bound), when they happened and the processes at the PSS peak. The samples go to `<out>/memory.csv`. Sampling
reads each process's smaps, which slows the run (2026-12-01: a whole default run 20:48 of stage time against 17:51 in
CI two hours before; 06 alone 429 s against 404 s).

    python bench/memory.py                      # the default run, all stages (~20 min on 2 cores)
    python bench/memory.py --stages 00 01 02    # the first stages only
    python bench/memory.py --source work/benchmark --stages 06   # 06 again on a copy of a finished run (~7 min)
"""

import argparse, csv, subprocess, sys, tempfile, time
from pathlib import Path
import psutil, yaml

sys.path.insert(0, str(Path(__file__).parent))
from shard import STAGES, copy_without  # noqa: E402 (bench/shard.py: the stages' outputs)
from cgddi.run import _PATH_KEY  # noqa: E402 (the keys `cgddi run` resolves against the params file)

ROOT = Path(__file__).resolve().parents[1]


def fresh_params(params: Path, work_dir: Path, to: Path) -> Path:
    "A copy of `params` at `to` with `work_dir` set and the other relative paths made absolute."
    p = yaml.safe_load(params.read_text()) or {}

    def absolute(section: dict):
        for k, v in section.items():
            if _PATH_KEY.match(k) and isinstance(v, str) and not Path(v).is_absolute():
                section[k] = str((params.parent / v).resolve())

    absolute(p)
    for section in (p.get("stages") or {}).values():
        absolute(section or {})
    p["work_dir"] = str(work_dir)
    to.write_text(yaml.safe_dump(p, sort_keys=False))
    return to


def tree_memory(root: psutil.Process) -> list[tuple[float, float, str]]:
    "(PSS GiB, RSS GiB, command) of `root` and every descendant still alive."
    out = []
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for q in procs:
        try:
            m = q.memory_full_info()
            out.append((m.pss / 2**30, m.rss / 2**30, " ".join(q.cmdline())[:100]))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params" / "default.yaml"))
    ap.add_argument("--stages", nargs="*", help="stage names or numbers (default: all)")
    ap.add_argument("--source", help="a finished run's work dir: run --stages (01, 03, 04, 06) on a copy of it")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between samples")
    ap.add_argument("--out", default=None, help="where the work dir, report and samples go (default: a temp folder)")
    a = ap.parse_args(argv)
    out = Path(a.out or tempfile.mkdtemp(prefix="cgddi-memory-"))
    out.mkdir(parents=True, exist_ok=True)
    if a.source:
        if not a.stages or set(a.stages) - set(STAGES):
            ap.error(f"--source needs --stages among {list(STAGES)}")
        copy_without(Path(a.source), out / "work", [o for s in a.stages for o in STAGES[s][3]])
    params = fresh_params(Path(a.params).resolve(), out / "work", out / "params.yaml")
    cmd = ["cgddi", "run", "--params", str(params), "--out", str(out / "report")]
    cmd += ["--stages", *a.stages] if a.stages else []
    t0 = time.perf_counter()
    run = subprocess.Popen(cmd)
    root = psutil.Process(run.pid)
    peak_pss = peak_rss = (0.0, 0.0)  # (GiB, seconds)
    at_peak: list = []
    with open(out / "memory.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["seconds", "pss_gib", "rss_gib", "processes"])
        while run.poll() is None:
            procs, t = tree_memory(root), time.perf_counter() - t0
            pss, rss = sum(p[0] for p in procs), sum(p[1] for p in procs)
            w.writerow([f"{t:.1f}", f"{pss:.3f}", f"{rss:.3f}", len(procs)])
            if pss > peak_pss[0]:
                peak_pss, at_peak = (pss, t), sorted(procs, reverse=True)
            if rss > peak_rss[0]:
                peak_rss = (rss, t)
            time.sleep(a.interval)
    print(f"cgddi run exited {run.returncode} after {time.perf_counter() - t0:.0f} s ({out / 'report'})")
    print(
        f"peak summed PSS {peak_pss[0]:.2f} GiB at {peak_pss[1]:.0f} s; peak summed RSS {peak_rss[0]:.2f} GiB at "
        f"{peak_rss[1]:.0f} s; samples: {out / 'memory.csv'}"
    )
    print("| process at the PSS peak | PSS GiB | RSS GiB |\n|---|---|---|")
    for pss, rss, c in at_peak:
        print(f"| `{c}` | {pss:.2f} | {rss:.2f} |")
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
