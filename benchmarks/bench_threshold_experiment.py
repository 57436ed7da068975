"""Benchmark a threshold experiment against the full pipeline.

`dvc exp run -S calibrate.policy=capacity -S calibrate.reps=6` against a full `dvc repro`, with every stage timed on
its own, optionally for a second checkout of the code (`--before`, e.g. main) in the same run, so the per-stage
tables stand side by side under the same load.

    python benchmarks/bench_threshold_experiment.py                        # default params.yaml (40,000 leads)
    python benchmarks/bench_threshold_experiment.py --small                # generate.leads=4000
    python benchmarks/bench_threshold_experiment.py --before /path/to/main # the same, for that checkout too

For each checkout, in a fresh copy of the repo (tests/conftest.py copy_repo: a git repo with the code, dvc.yaml and
params.yaml):

1. `python -m dvc repro` (the whole DAG, from generate to score), timed;
2. `python -m dvc repro` again: nothing to do, so this is DVC's own fixed cost of a repro;
3. `python -m dvc exp run` with nothing changed: no stage runs, so this is DVC's own fixed cost of an experiment
   (the workspace commit, the experiment ref, applying it back), which every experiment pays;
4. `python -m dvc exp run -S calibrate.policy=capacity -S calibrate.reps=6`, timed; DVC's output is parsed to list
   which stages ran, checked against the stages that should (calibrate, explain, evaluate, score);
5. the ratio experiment / full run (the aim: at most 20%), in wall and in CPU seconds;
6. with --per-stage, or when the aim is missed: each stage's own command from dvc.yaml, run alone outside DVC (best
   of --stage-repeat), wall, CPU and peak RSS, and how much of the experiment is DVC rather than stage code.

Each command runs as a child process; its peak RSS (wait4: the largest process in its tree) and its CPU seconds (its
whole process tree) are printed beside its wall time. The copies are deleted afterwards unless --keep or --dir.
Timings are never asserted.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EXPERIMENT = ["-S", "calibrate.policy=capacity", "-S", "calibrate.reps=6"]
EXPECTED = ("calibrate", "explain", "evaluate", "score")
AIM = 0.20
RAN = re.compile(r"Running stage '([^']+)'")
SKIPPED = re.compile(r"Stage '([^']+)' didn't change, skipping")
RESTORED = re.compile(r"Stage '([^']+)' is cached - skipping run, checking out outputs")


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu_seconds: float
    peak_rss_gb: float
    output: str

    def ran(self) -> list[str]:
        return RAN.findall(self.output)


@dataclass
class Checkout:
    """What was measured for one checkout of the code."""

    label: str
    full: Run
    noop: Run
    exp_noop: Run
    exp: Run
    stages: dict[str, Run] = field(default_factory=dict)


def timed(cmd: list[str], repo: Path) -> Run:
    """Run `cmd` in the copy; wall time, CPU seconds of its process tree, peak RSS of its largest process."""
    from tests.conftest import tool_env

    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=repo, env=tool_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {code}:\n{text[-4000:]}")
    return Run(seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024 / 1e9, text)


def dvc(repo: Path, *args: str) -> Run:
    return timed([sys.executable, "-m", "dvc", *args], repo)


def stage_commands(repo: Path) -> dict[str, list[str]]:
    """Each stage's command as DVC last ran it (dvc.lock: `${...}` resolved), in dvc.yaml's order."""
    import yaml

    locked = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {name: shlex.split(str(locked[name]["cmd"])) for name in
            yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]}


def line(name: str, run: Run, extra: str = "") -> str:
    return (f"  {name:<34} {run.seconds:7.1f} s  CPU {run.cpu_seconds:6.1f} s  peak RSS {run.peak_rss_gb:.2f} GB"
            + (f"  {extra}" if extra else ""))


def measure(label: str, code: Path, base: Path, overrides: dict[str, dict[str, object]], *, per_stage: bool,
            repeat: int) -> Checkout:
    from tests.conftest import copy_repo

    repo = base / label
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    copy_repo(repo, overrides, root=code)
    print(f"{label}: code from {code}, copy in {repo}; load average {os.getloadavg()[0]:.1f}")
    full = dvc(repo, "repro")
    print(line("full `dvc repro`", full, f"ran {', '.join(full.ran())}"))
    noop = dvc(repo, "repro")
    print(line("no-op `dvc repro` (DVC's floor)", noop, f"ran {', '.join(noop.ran()) or 'nothing'}"))
    exp_noop = dvc(repo, "exp", "run")
    print(line("no-op `dvc exp run` (DVC's floor)", exp_noop, f"ran {', '.join(exp_noop.ran()) or 'nothing'}"))
    exp = dvc(repo, "exp", "run", *EXPERIMENT)
    print(line(f"`dvc exp run {' '.join(EXPERIMENT)}`", exp))
    ran, skipped, restored = exp.ran(), SKIPPED.findall(exp.output), RESTORED.findall(exp.output)
    print(f"  stages run:     {', '.join(ran) or 'none'}")
    print(f"  stages skipped: {', '.join(skipped) or 'none'}"
          + (f"; restored from the run cache: {', '.join(restored)}" if restored else ""))
    unexpected = sorted(set(ran) - set(EXPECTED))
    missing = sorted(set(EXPECTED) - set(ran) - set(restored))
    print(f"  expected to run: {', '.join(EXPECTED)} -> "
          + ("as expected" if not unexpected and not missing else
             f"NOT as expected: also ran {unexpected or 'nothing else'}, did not run {missing or 'none missing'}"))
    ratio = exp.seconds / full.seconds
    print(f"  ratio experiment / full repro: {ratio:.1%} wall (aim {AIM:.0%}: {'met' if ratio <= AIM else 'MISSED'}), "
          f"{exp.cpu_seconds / full.cpu_seconds:.1%} CPU; without DVC's fixed cost of an experiment: "
          f"{(exp.seconds - exp_noop.seconds) / (full.seconds - noop.seconds):.1%} wall")
    result = Checkout(label, full, noop, exp_noop, exp)
    if per_stage or ratio > AIM:
        print(f"  each stage's own command, outside DVC (best of {repeat}):")
        for stage, cmd in stage_commands(repo).items():
            runs = [timed(cmd, repo) for _ in range(max(1, repeat))]
            result.stages[stage] = min(runs, key=lambda r: r.seconds)
            print(line(stage, result.stages[stage], "<- re-run by the experiment" if stage in ran else ""))
        in_exp = sum(result.stages[s].seconds for s in ran if s in result.stages)
        print(f"  the experiment's stages take {in_exp:.1f} s of its {exp.seconds:.1f} s; DVC the other "
              f"{exp.seconds - in_exp:.1f} s (its fixed cost of an experiment alone: {exp_noop.seconds:.1f} s)")
    return result


def table(results: list[Checkout]) -> str:
    """A Markdown table: every stage's wall and CPU seconds per checkout, then the runs that give the ratio."""
    names: list[str] = []
    for r in results:
        names += [s for s in r.stages if s not in names]
    head = "| stage | " + " | ".join(f"{r.label} wall | {r.label} CPU" for r in results) + " |"
    rows = [head, "|" + " --- |" * (1 + 2 * len(results))]

    def cells(run: Run | None) -> str:
        return f"{run.seconds:.1f} s | {run.cpu_seconds:.1f} s" if run else "— | —"

    for name in names:
        marks = [" (re-run)" if name in r.exp.ran() else "" for r in results]
        rows.append(f"| `{name}`{marks[-1]} | " + " | ".join(cells(r.stages.get(name)) for r in results) + " |")
    for title, get in (("full `dvc repro`", lambda r: r.full), ("no-op `dvc exp run`", lambda r: r.exp_noop),
                       ("threshold experiment", lambda r: r.exp)):
        rows.append(f"| {title} | " + " | ".join(cells(get(r)) for r in results) + " |")
    rows.append("| experiment / full | " + " | ".join(
        f"{r.exp.seconds / r.full.seconds:.1%} | {r.exp.cpu_seconds / r.full.cpu_seconds:.1%}" for r in results) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="generate.leads=4000")
    ap.add_argument("--before", type=Path, help="another checkout of leadlift (e.g. main) to measure first")
    ap.add_argument("--dir", type=Path, help="where to make the copies (default: a new temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the copies")
    ap.add_argument("--per-stage", action="store_true", help="time every stage alone even when the aim is met")
    ap.add_argument("--stage-repeat", type=int, default=2, help="runs per stage when timing stages alone; best kept")
    args = ap.parse_args()

    overrides: dict[str, dict[str, object]] = {"generate": {"leads": 4000}} if args.small else {}
    base = args.dir or Path(tempfile.mkdtemp(prefix="leadlift_bench_threshold_"))
    print(f"bench_threshold_experiment: generate.leads={'4,000' if args.small else 'as in params.yaml'}; "
          f"{os.cpu_count()} cores")
    try:
        checkouts = [("before", args.before)] if args.before else []
        results = [measure(label, code, base, overrides, per_stage=args.per_stage or bool(args.before),
                           repeat=args.stage_repeat)
                   for label, code in [*checkouts, ("after" if args.before else "this", ROOT)]]
        if any(r.stages for r in results):
            print(f"\nper stage (own command outside DVC, best of {args.stage_repeat}); load average now "
                  f"{os.getloadavg()[0]:.1f}:\n\n{table(results)}")
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
