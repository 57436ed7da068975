"""Benchmark a threshold experiment against the full pipeline.

`dvc exp run -S calibrate.policy=capacity ...` against a full `dvc repro`.

    python benchmarks/bench_threshold_experiment.py            # default params.yaml (generate.leads as shipped)
    python benchmarks/bench_threshold_experiment.py --small    # generate.leads=4000

In a fresh copy of the repo (tests/conftest.py copy_repo: a git repo with the code, dvc.yaml and params.yaml):

1. `python -m dvc repro` (the whole DAG, from generate to score), timed;
2. `python -m dvc repro` again: nothing to do, so this is DVC's own fixed cost (the floor of any run);
3. `python -m dvc exp run -S calibrate.policy=capacity -S calibrate.reps=6`, timed; DVC's output is parsed to list
   which stages ran, and checked against the stages that should (calibrate, explain, evaluate, score);
4. the ratio experiment / full run (the aim: about 10%). Above 10%, each stage that the experiment re-ran, and every
   other stage too, is timed alone with `python -m dvc repro -s <stage> -f` to show which one dominates.

Each dvc command runs as a child process; its peak RSS (wait4: the largest process in its tree, i.e. the biggest
stage) and its CPU seconds (its whole process tree) are printed beside its wall time. The copy is deleted
afterwards unless --keep or --dir. Timings are never asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EXPERIMENT = ["-S", "calibrate.policy=capacity", "-S", "calibrate.reps=6"]
EXPECTED = ("calibrate", "explain", "evaluate", "score")
AIM = 0.10
RAN = re.compile(r"Running stage '([^']+)'")
SKIPPED = re.compile(r"Stage '([^']+)' didn't change, skipping")
RESTORED = re.compile(r"Stage '([^']+)' is cached - skipping run, checking out outputs")


@dataclass(frozen=True)
class DvcRun:
    seconds: float
    cpu_seconds: float
    peak_rss_gb: float
    ran: list[str]
    skipped: list[str]
    restored: list[str]
    output: str


def dvc(repo: Path, *args: str) -> DvcRun:
    """Run `python -m dvc ARGS` in the copy; wall time, peak RSS of its largest process, and the stages it ran."""
    from tests.conftest import tool_env

    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=repo, env=tool_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed with exit code {code}:\n{text[-4000:]}")
    return DvcRun(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024 / 1e9, RAN.findall(text),
                  SKIPPED.findall(text),
                  RESTORED.findall(text), text)  # fmt: skip


def stage_names(repo: Path) -> list[str]:
    import yaml

    return list(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="generate.leads=4000")
    ap.add_argument("--dir", type=Path, help="where to make the copy (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the copy")
    ap.add_argument("--per-stage", action="store_true", help="time every stage alone even when the aim is met")
    ap.add_argument("--stage-repeat", type=int, default=2, help="runs per stage when timing stages alone; best kept")
    args = ap.parse_args()

    import yaml

    from tests.conftest import copy_repo

    overrides: dict[str, dict[str, object]] = {"generate": {"leads": 4000}} if args.small else {}
    base = args.dir or Path(tempfile.mkdtemp(prefix="leadlift_bench_threshold_"))
    repo = base / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    try:
        copy_repo(repo, overrides)
        params = yaml.safe_load((repo / "params.yaml").read_text())
        print(f"bench_threshold_experiment: copy in {repo}; generate.leads={params['generate']['leads']:,}, "
              f"new_leads={params['generate']['new_leads']:,}, calibrate.policy={params['calibrate']['policy']}, "
              f"bootstrap={params['calibrate']['bootstrap']}; {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f}")

        full = dvc(repo, "repro")
        print(f"full `dvc repro`:                 {full.seconds:8.1f} s  CPU {full.cpu_seconds:6.1f} s  "
              f"peak RSS {full.peak_rss_gb:.2f} GB  "
              f"ran {', '.join(full.ran)}")
        noop = dvc(repo, "repro")
        print(f"no-op `dvc repro` (DVC's floor):  {noop.seconds:8.1f} s  CPU {noop.cpu_seconds:6.1f} s  "
              f"ran {', '.join(noop.ran) or 'nothing'}")
        exp = dvc(repo, "exp", "run", *EXPERIMENT)
        print(f"`dvc exp run {' '.join(EXPERIMENT)}`: {exp.seconds:8.1f} s  CPU {exp.cpu_seconds:6.1f} s  "
              f"peak RSS {exp.peak_rss_gb:.2f} GB")
        print(f"  stages run:     {', '.join(exp.ran) or 'none'}")
        print(f"  stages skipped: {', '.join(exp.skipped) or 'none'}"
              + (f"; restored from the run cache: {', '.join(exp.restored)}" if exp.restored else ""))
        unexpected = sorted(set(exp.ran) - set(EXPECTED))
        missing = sorted(set(EXPECTED) - set(exp.ran) - set(exp.restored))
        print(f"  expected to run: {', '.join(EXPECTED)} -> "
              + ("as expected" if not unexpected and not missing else
                 f"NOT as expected: also ran {unexpected or 'nothing else'}, did not run {missing or 'none missing'}"))
        ratio = exp.seconds / full.seconds
        print(f"ratio experiment / full repro: {ratio:.1%} (aim {AIM:.0%}: {'met' if ratio <= AIM else 'MISSED'}); "
              f"without DVC's fixed cost: {(exp.seconds - noop.seconds) / (full.seconds - noop.seconds):.1%}; "
              f"in CPU seconds: {exp.cpu_seconds / full.cpu_seconds:.1%}; load average now {os.getloadavg()[0]:.1f}")

        if ratio > AIM or args.per_stage:
            print(f"each stage alone (`dvc repro -s <stage> -f`, after the experiment, best of {args.stage_repeat}; "
                  "includes DVC's own start-up):")
            times: dict[str, float] = {}
            for stage in stage_names(repo):
                runs = [dvc(repo, "repro", "-s", stage, "-f") for _ in range(max(1, args.stage_repeat))]
                one = min(runs, key=lambda r: r.seconds)
                times[stage] = one.seconds
                mark = " <- re-run by the experiment" if stage in exp.ran else ""
                print(f"  {stage:<10} {one.seconds:8.1f} s  CPU {one.cpu_seconds:6.1f} s  "
                      f"peak RSS {max(r.peak_rss_gb for r in runs):.2f} GB{mark}")
            in_exp = {s: times[s] for s in exp.ran if s in times}
            if in_exp:
                top = max(in_exp, key=lambda s: in_exp[s])
                print(
                    f"dominant stage of the experiment: {top} ({in_exp[top]:.1f} s of {sum(in_exp.values()):.1f} s "
                    f"summed over its {len(in_exp)} stages; {in_exp[top] / exp.seconds:.0%} of the experiment's wall)"
                )
            top_all = max(times, key=lambda s: times[s])
            print(f"dominant stage of the full run: {top_all} ({times[top_all]:.1f} s of {sum(times.values()):.1f} s)")
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
