"""Probe for issue 18: does a finer search of the per-context shifts pay?

The encoder fits each (plane, context)'s mean shift in steps of 8, 4, 2 sixteenths and its
log-scale shift in steps of 16 .. 1, one pass each. This codes sampled 256-px tiles of
every validation folder with the shipped prior twice, as the encoder does and with a
finer search (mean steps down to 1, and the whole search twice), and prints the real
payload bits per subpixel and the encoding time. Decoders are unaffected either way.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python scripts/probes/shift_search.py --tiles 20
"""

from __future__ import annotations

import argparse
import time

from prior_ablation import DATA, tiles

from idfcompress.predictive import coder, prior


def finer_shifts(coded, mean, scale, contexts):
    """:func:`prior.fit_shifts` with mean steps down to 1 and a second pass."""
    return shipped(coded, mean, scale, contexts, mean_steps=(8, 4, 2, 1), passes=2)


shipped = prior.fit_shifts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=20, help="tiles per folder")
    args = parser.parse_args()
    net = prior.load_prior(prior.DEFAULT_PRIOR)
    print(f"{'folder':<22}{'shipped':>9}{'finer':>9}  change  time shipped / finer")
    for folder in sorted(p for p in DATA.glob("*/*") if p.is_dir()):
        sample = tiles(folder, args.tiles, seed=0)
        values = sum(t.size for t in sample)
        sizes, times = [], []
        for fit in (shipped, finer_shifts):
            prior.fit_shifts = fit
            started = time.monotonic()
            sizes.append(sum(len(coder.plan([t], net).payload()) for t in sample))
            times.append(time.monotonic() - started)
        prior.fit_shifts = shipped
        bpsp = [8 * s / values for s in sizes]
        name = folder.parent.name + "/" + folder.name
        change = 100 * (sizes[1] / sizes[0] - 1)
        print(f"{name:<22}{bpsp[0]:>9.4f}{bpsp[1]:>9.4f}  {change:+.2f} %  "
              f"{times[0]:.1f} / {times[1]:.1f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
