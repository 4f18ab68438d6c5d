"""Poisson-disk sampling: ``poisson_disk_positions`` against scipy's Bridson.

Prints one JSON line per case. Each implementation runs in its own fresh
subprocess, so its peak RSS is its own. The reference is
``scipy.stats.qmc.PoissonDisk(d=2, radius=r, l_bounds=0, u_bounds=side,
hypersphere="surface", ncandidates=30, seed=0).fill_space()``.

By default: 2048^2 and 4096^2 with radius 16 for both, side by side, then
16384^2 with radius 16 for zarrsample alone, compared with scipy's per-point
cost measured on the largest smaller case (labelled as extrapolated: scipy
needs minutes there). ``--full`` also runs scipy on 16384^2.

Usage: ``python benchmarks/poisson.py [--full] [--case NAME]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from workloads import emit, peak_rss_mb  # noqa: E402

RADIUS = 16.0
# name: (square side, run scipy by default)
CASES = {
    "poisson-2d-2048": (2048, True),
    "poisson-2d-4096": (4096, True),
    "poisson-2d-16384": (16384, False),
}
IMPLEMENTATIONS = ("zarrsample", "scipy")


def run_child(impl: str, side: int, radius: float, repeat: int) -> None:
    """Generate, then print one JSON dict of figures for one implementation."""
    import numpy as np
    from scipy.spatial import cKDTree
    from scipy.stats import qmc

    from zarrsample_core.planning._bluenoise import poisson_disk_positions

    def generate() -> np.ndarray:
        if impl == "zarrsample":
            return poisson_disk_positions((side, side), radius, rng=np.random.default_rng(0))
        engine = qmc.PoissonDisk(
            d=2, radius=radius, l_bounds=[0, 0], u_bounds=[side, side],
            hypersphere="surface", ncandidates=30, seed=0,
        )
        return engine.fill_space()

    baseline = peak_rss_mb()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        points = generate()
        best = min(best, time.perf_counter() - t0)
    peak = peak_rss_mb()  # before the analysis below
    tree = cKDTree(points)
    nearest, _ = tree.query(points, k=2)
    # Pairs breaking the documented rule sq = dx*dx + dy*dy >= r*r (float64).
    pairs = tree.query_pairs(radius * (1 + 1e-9), output_type="ndarray")
    d = points[pairs[:, 0]] - points[pairs[:, 1]]
    violations = int((d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] < radius * radius).sum())
    inside = bool(((points >= 0) & (points < side)).all())
    print(json.dumps({
        "n": len(points),
        "seconds": round(best, 4),
        "repeat": repeat,
        "density": round(len(points) * radius**2 / side**2, 4),
        "min_distance": float(nearest[:, 1].min()),
        "violations": violations,
        "inside": inside,
        "peak_rss_mb": round(peak, 1),
        "rss_above_imports_mb": round(peak - baseline, 1),
    }))


def measure(impl: str, side: int, radius: float, repeat: int) -> dict:
    cmd = [sys.executable, __file__, "--child", impl, str(side), str(radius), str(repeat)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also run scipy on 16384^2 (minutes)")
    parser.add_argument("--case", choices=sorted(CASES), action="append", help="run only these cases")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, side, radius, repeat = args.child
        run_child(impl, int(side), float(radius), int(repeat))
        return
    scipy_cost: tuple[float, float] | None = None  # (seconds per point, density) of the largest case
    for name in args.case or CASES:
        side, with_scipy = CASES[name]
        ours = measure("zarrsample", side, RADIUS, repeat=3 if side <= 4096 else 1)
        row: dict[str, object] = {"case": name, "domain": [side, side], "radius": RADIUS}
        runs = {"zarrsample": ours}
        if with_scipy or args.full:
            runs["scipy"] = theirs = measure("scipy", side, RADIUS, repeat=1)
            scipy_cost = (theirs["seconds"] / theirs["n"], theirs["density"])
        for key in ("n", "seconds", "density", "min_distance", "violations", "inside", "peak_rss_mb",
                    "rss_above_imports_mb"):
            for impl, figures in runs.items():
                row[f"{key}_{impl}"] = figures[key]
        row["repeat_zarrsample"] = ours["repeat"]
        if "scipy" in runs:
            row["speedup"] = round(runs["scipy"]["seconds"] / ours["seconds"], 1)
            row["speedup_per_point"] = round(
                (runs["scipy"]["seconds"] / runs["scipy"]["n"]) / (ours["seconds"] / ours["n"]), 1
            )
        elif scipy_cost is not None:
            per_point, density = scipy_cost
            n_scipy = density * side * side / RADIUS**2
            row["scipy_extrapolated"] = True
            row["scipy_seconds_per_point_measured"] = per_point
            row["seconds_scipy_extrapolated"] = round(per_point * n_scipy, 1)
            row["speedup_extrapolated"] = round(per_point * n_scipy / ours["seconds"], 1)
            row["speedup_per_point_extrapolated"] = round(per_point / (ours["seconds"] / ours["n"]), 1)
        emit(**row)


if __name__ == "__main__":
    main()
