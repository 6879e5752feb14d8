"""How finely can a finished run tell issue 22's findings? Per split seed, the paired accuracy differences of the
findings table (07's `tab_07_findings_<protocol>`), the test split's size (one image in points), the standard error of
the mean over seeds, and how many seeds a standard error of `--resolution` points would take at that spread; then the
mean over every choice of `--subset` of the seeds (what a run with fewer seeds would have shown, which ones decide).

    python bench/seed_noise.py --source work/benchmark            # after `cgddi run`
    python bench/seed_noise.py --source W --resolution 2 --subset 3

Reads the run's saved predictions only (`cgddi.fairness.run_results`); trains nothing. A figure of the run's data, not
of its speed: it is here because it says what a bar of a few points can mean on the benchmark's test splits.
"""

import argparse, itertools, math, warnings
import numpy as np
import pandas as pd
from cgddi.fairness import (
    finding_claims,
    majority_rates,
    mean_interval,
    paired_difference,
    resolution_note,
    run_results,
)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", required=True, help="a finished run's work dir (06 done)")
    ap.add_argument("--resolution", type=float, default=2.0, help="points: the standard error a bar of this size needs")
    ap.add_argument("--subset", type=int, default=3, help="seeds per subset for the subsets' means")
    a = ap.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined fairness metrics of a few runs: not what this reads
        r = run_results(a.source)
    per_seed = pd.concat([r.per_seed, majority_rates(r.pred)], ignore_index=True)
    print(f"source {a.source}; synthetic_method {r.synthetic_method}")
    rows = []
    for protocol in per_seed.protocol.unique():
        ps = per_seed[per_seed.protocol == protocol]
        print(f"\n{protocol}:{resolution_note(r.pred[r.pred.protocol == protocol])}")
        for label, x, other, y in finding_claims(r.synthetic_method):
            name = f"{label} − {other}"
            d = paired_difference(ps, x, y)["accuracy"]
            n = len(d)
            if n < 2:
                print(f"  {name}: {n} seed(s), no spread")
                continue
            sd = d.std(ddof=1)
            se = sd / math.sqrt(n)
            means = [d.loc[list(c)].mean() for c in itertools.combinations(d.index, a.subset)] if n > a.subset else []
            rows.append(
                dict(
                    protocol=protocol,
                    difference=name,
                    per_seed=" ".join(f"S{s}:{v:+.1f}" for s, v in d.items()),
                    mean=f"{d.mean():+.1f}",
                    population_sd=f"{d.std(ddof=0):.1f}",
                    standard_error=f"{se:.1f}",
                    ci95="{:+.1f} to {:+.1f}".format(*mean_interval(d)),
                    seeds_for_resolution=int(np.ceil((sd / a.resolution) ** 2)),
                    subset_means=f"{min(means):+.1f} … {max(means):+.1f}" if means else "n/a",
                )
            )
    t = pd.DataFrame(rows)
    print(
        f"\nPaired differences in points per split seed; standard error = sample sd / √seeds; 95 % interval by "
        f"Student's t; seeds for a standard error of {a.resolution:g} points at this spread; the range of the mean "
        f"over every {a.subset} of the seeds:\n"
    )
    print(t.to_markdown(index=False, disable_numparse=True))


if __name__ == "__main__":
    main()
