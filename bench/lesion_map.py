"""Lesion-mapping throughput: the full `map_lesions` loop (placement, feathered paste, PNG + manifest writes).

Builds an embedded benchmark with about `--healthy` kept healthy images and `--donors` annotated donors, then
times `cgddi.lesion_map.map_lesions` at `--size` px and prints ms per candidate, candidates/s and the time the
paper's 103,206-candidate loop would take at that rate. The healthy set comes from the opencv backend with the
review sheet set to keep the first `--healthy` images (this measures mapping, not triage).

    python bench/lesion_map.py                          # 300 x 330 at 256 px, all cores
    python bench/lesion_map.py --size 1024 --healthy 30 # 1024 px on a slice of the healthy set
"""

import argparse, math, os, shutil, tempfile, time
from pathlib import Path
import pandas as pd
from cgddi.benchmark import make_benchmark
from cgddi.data import load_ddi, write_data
from cgddi.healthy import make_healthy, HealthyConfig
from cgddi.lesion_map import map_lesions, LesionMapConfig
from cgddi.layout import REVIEW_SHEET

PAPER_CANDIDATES = 103_206


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--healthy", type=int, default=300, help="kept healthy images")
    ap.add_argument("--donors", type=int, default=330, help="annotated donor images (about)")
    ap.add_argument("--size", type=int, default=256, help="working resolution in px")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one, removed afterwards)")
    a = ap.parse_args()
    work = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="cgddi-bench-"))
    try:
        t = time.perf_counter()
        n_images = math.ceil(max(a.donors + 1, a.healthy) / 0.85) + 5
        ddi = load_ddi(make_benchmark(work / "benchmark", seed=11, n_images=n_images), check_images=False)
        ddi = write_data(ddi, work)
        make_healthy(work, HealthyConfig(backend="opencv"))
        sheet = pd.read_csv(work / REVIEW_SHEET, dtype={"reasons": str, "note": str})
        sheet["keep"] = sheet.index < a.healthy
        sheet.to_csv(work / REVIEW_SHEET, index=False)
        print(
            f"setup {time.perf_counter() - t:.0f} s: {int(sheet.keep.sum())} healthy, "
            f"{ddi.frame_mask_path.notna().sum()} annotated images"
        )
        t = time.perf_counter()
        log = map_lesions(work, LesionMapConfig(size=a.size, workers=a.workers))
        s = time.perf_counter() - t
        n, placed = len(log), int((log.status == "placed").sum())
        written = sum(p.stat().st_size for p in (work / "lesion_mapped").rglob("*.png"))
        print(f"size {a.size} px, {a.workers or os.cpu_count()} processes on {os.cpu_count()} cores")
        print(f"candidates {n}  placed {placed}  skipped {n - placed} ({100 * (n - placed) / n:.1f} %)")
        print(f"wall {s:.1f} s  ->  {1000 * s / n:.2f} ms per candidate (wall), {n / s:.0f} candidates/s")
        print(f"images written: {placed}, {written / 2**30:.2f} GiB ({written / max(placed, 1) / 1024:.0f} KiB each)")
        print(
            f"the paper's {PAPER_CANDIDATES:,} candidates at this rate: {PAPER_CANDIDATES * s / n / 60:.1f} min "
            f"(paper: about 30 CPU-hours, ~1 s per candidate)"
        )
    finally:
        if not a.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
