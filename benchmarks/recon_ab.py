"""Interleaved A/B timing of mskjax's reconstructions: this working tree against a git revision.

``recon_speed.py --baseline REV`` times the revision in a separate process after the current
code, so slow drift of the machine (other load, frequency) enters the ratio. This script
imports both versions into one process (the revision's package is extracted with ``git
archive`` under the name ``mskjax_baseline``; it must use relative imports only, which the
script checks) and alternates them call by call, ``--rounds`` times, on the same inputs:
CG-SENSE (30 iterations), L1-wavelet (30) and total variation (100) on the real brain (2D
Poisson mask, inferred from the k-space) and the simulated 640 x 368 15-coil knee (1D mask).
It reports the median and minimum of each and their ratios (current / baseline), and writes
``benchmarks/results/recon_ab.json``.

    python benchmarks/recon_ab.py REV [--rounds 12] [--cases brain,knee]
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import recon_speed  # noqa: E402  (the same cases and settings)

from mskjax import recon  # noqa: E402


def extract(rev: str, into: Path) -> str:
    """Extract ``mskjax/`` of ``rev`` as the package ``mskjax_baseline``; return the commit."""
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", rev], check=True,
                            capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", "-C", str(root), "archive", commit, "mskjax"], check=True,
                             capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "mskjax").rename(into / "mskjax_baseline")
    for path in (into / "mskjax_baseline").rglob("*.py"):
        code = re.sub(r'""".*?"""', "", path.read_text(), flags=re.S)
        if re.search(r"^\s*(from|import) mskjax\b", code, re.M):
            raise SystemExit(f"{path}: absolute mskjax import; cannot load two versions at once")
    return commit


def functions(module, mask):
    return {
        "cg_sense": jax.jit(lambda k, m: module.cg_sense(
            k, m, mask=mask, lamda=recon_speed.CG_LAMDA, max_iter=recon_speed.ITERATIONS).image),
        "l1_wavelet": jax.jit(lambda k, m: module.l1_wavelet(
            k, m, mask=mask, lamda=recon_speed.L1_LAMDA, max_iter=recon_speed.ITERATIONS).image),
        "total_variation": jax.jit(lambda k, m: module.total_variation(
            k, m, mask=mask, lamda=recon_speed.TV_LAMDA,
            max_iter=recon_speed.TV_ITERATIONS).image),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--cases", default="brain,knee")
    args = parser.parse_args()
    results = {"rounds": args.rounds, "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        results["baseline_commit"] = extract(args.rev, Path(tmp))
        sys.path.insert(0, tmp)
        baseline = importlib.import_module("mskjax_baseline.recon")
        print(f"{'case':<8}{'method':<18}{'before med s':>13}{'after med s':>12}"
              f"{'after/before med':>17}{'min':>7}")
        for name in args.cases.split(","):
            case = recon_speed.BUILDERS[name]()
            maps = recon_speed.espirit_maps(case["kspace"])
            k, m = jnp.asarray(case["kspace"]), jnp.asarray(maps)
            versions = {"before": functions(baseline, case.get("mask")),
                        "after": functions(recon, case.get("mask"))}
            rows = {}
            for method in versions["after"]:
                times = {"before": [], "after": []}
                for fn in (versions["before"][method], versions["after"][method]):
                    jax.block_until_ready(fn(k, m))  # compile
                for r in range(args.rounds):
                    for version in (("before", "after") if r % 2 else ("after", "before")):
                        start = time.perf_counter()
                        jax.block_until_ready(versions[version][method](k, m))
                        times[version].append(time.perf_counter() - start)
                before, after = times["before"], times["after"]
                row = {"before_median_s": statistics.median(before),
                       "after_median_s": statistics.median(after),
                       "before_min_s": min(before), "after_min_s": min(after)}
                row["after_over_before_median"] = row["after_median_s"] / row["before_median_s"]
                row["after_over_before_min"] = row["after_min_s"] / row["before_min_s"]
                rows[method] = row
                print(f"{name:<8}{method:<18}{row['before_median_s']:>13.3f}"
                      f"{row['after_median_s']:>12.3f}{row['after_over_before_median']:>16.3f}x"
                      f"{row['after_over_before_min']:>6.3f}x")
            results["cases"][name] = rows
    path = Path(__file__).parent / "results" / "recon_ab.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
