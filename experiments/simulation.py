"""The MEMoE simulation study: run it, resume it, rebuild its tables.

    python experiments/simulation.py --reps 100 --out DIR [--workers 2]
        [--settings example1 example2 ...] [--n-subjects 200] [--n-test 100] [--n-starts 5]
        [--seed 20250101] [--resume] [--tables-only]

The design is in the docstring of ``sim_design.py``; one replication is ``sim_replication.py``;
the tables, plots and README ``sim_report.py``. The metrics that outlive the study (adjusted
Rand index, label matching, relabelled parameter vectors) are in :mod:`pymemoe.metrics`.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Sequence

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))   # the sibling sim_* modules

from sim_design import MODEL_COLUMNS, MODELS, PARAM_COLUMNS, SETTINGS, StudyConfig, raw_paths  # noqa: E402
from sim_replication import run_job, run_replication  # noqa: E402,F401
from sim_report import write_outputs  # noqa: E402

__all__ = ["run_study", "main", "run_replication", "write_outputs"]


# -- the study --------------------------------------------------------------------------------------

def _append(path: Path, rows: list[dict], columns: list[str]) -> None:
    if not rows:
        return
    frame = pd.DataFrame(rows).reindex(columns=columns)
    frame.to_csv(path, mode="a", header=not path.exists(), index=False)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _ThreadLimits:
    """Single-threaded BLAS in the worker processes (set before they import numpy)."""

    NAMES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")

    def __enter__(self):
        self.saved = {k: os.environ.get(k) for k in self.NAMES}
        for k in self.NAMES:
            os.environ.setdefault(k, "1")
        return self

    def __exit__(self, *exc):
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        return False


def run_study(out, config: StudyConfig | None = None, workers: int = 2, progress: bool = True,
              resume: bool = False) -> dict[str, pd.DataFrame]:
    """Run the simulation study and write every output into the folder ``out``.

    Parameters
    ----------
    out : str or Path
        Output folder (created). ``raw/replications.csv`` and ``raw/parameters.csv`` grow as
        replications finish; the tables, plots and README are written at the end.
    config : StudyConfig, optional
        Replications, sample sizes, starts, seed, settings and models (default
        ``StudyConfig()``: 100 replications of every setting).
    workers : int
        Processes of the pool (1: run in this process).
    progress : bool
        Print one line per finished replication (with the elapsed time and an estimate of the
        time left).
    resume : bool
        Keep the replications already in ``out/raw`` (same configuration) and run the others.

    Returns
    -------
    dict of str to DataFrame
        ``"models"`` and ``"parameters"`` (the summary tables) and ``"replications"``,
        ``"raw_parameters"`` (the raw results).
    """
    config = config or StudyConfig()
    out = Path(out)
    (out / "raw").mkdir(parents=True, exist_ok=True)
    reps_path, params_path = raw_paths(out)
    config_path = out / "config.json"
    done: set[tuple[str, int]] = set()
    if resume and reps_path.exists() and config_path.exists():
        old = StudyConfig.from_json(json.loads(config_path.read_text()))
        same = {k: v for k, v in old.to_json().items() if k not in ("reps", "settings")}
        new = {k: v for k, v in config.to_json().items() if k not in ("reps", "settings")}
        if same != new:
            raise ValueError(f"--resume: the configuration in {config_path} differs from this "
                             f"one ({same} against {new}); use another --out")
        previous = pd.read_csv(reps_path)
        counts = previous.groupby(["setting", "rep"])["model"].nunique()
        done = {key for key, n in counts.items() if n == len(config.models)}
        # drop partial replications (an interruption while writing)
        keep = previous.set_index(["setting", "rep"]).index.isin(list(done))
        previous[keep].to_csv(reps_path, index=False)
        if params_path.exists():
            p = pd.read_csv(params_path)
            p[p.set_index(["setting", "rep"]).index.isin(list(done))].to_csv(params_path,
                                                                              index=False)
    else:
        for path in (reps_path, params_path):
            if path.exists():
                path.unlink()
    config_path.write_text(json.dumps(config.to_json(), indent=2) + "\n")

    jobs = [(s, r, config) for s in config.settings for r in range(config.reps)
            if (s, r) not in done]
    total = len(jobs)
    if progress:
        print(f"simulation study: {len(config.settings)} settings x {config.reps} replications "
              f"({total} to run, {len(done)} kept), {config.n_subjects} training + "
              f"{config.n_test} held-out subjects, {config.n_starts} starts, models "
              f"{', '.join(config.models)}, {workers} worker(s); output {out}", flush=True)
    start = time.perf_counter()

    def record(result, finished: int) -> None:
        setting, rep, model_rows, param_rows, seconds = result
        _append(reps_path, model_rows, MODEL_COLUMNS)
        _append(params_path, param_rows, PARAM_COLUMNS)
        if progress:
            elapsed = time.perf_counter() - start
            eta = elapsed / finished * (total - finished)
            failed = sum(r["status"] != "ok" for r in model_rows)
            note = f", {failed} failed fit(s)" if failed else ""
            print(f"[{finished:>{len(str(total))}}/{total}] {setting} rep {rep} "
                  f"({seconds:.1f} s{note}) | elapsed {_clock(elapsed)} | "
                  f"left ~{_clock(eta)}", flush=True)

    if workers <= 1:
        for i, job in enumerate(jobs, start=1):
            record(run_job(job), i)
    elif jobs:
        with _ThreadLimits(), ProcessPoolExecutor(
                max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(run_job, job) for job in jobs]
            for i, future in enumerate(as_completed(futures), start=1):
                record(future.result(), i)
    if progress:
        print(f"done in {_clock(time.perf_counter() - start)}; writing tables", flush=True)
    return write_outputs(out, config, progress=progress)


# -- command line ---------------------------------------------------------------------------------

def _settings_arg(values: Sequence[str] | None) -> tuple[str, ...]:
    if not values:
        return tuple(SETTINGS)
    names = [v for value in values for v in value.split(",") if v]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown settings {unknown}; choose from "
                                         f"{list(SETTINGS)}")
    return tuple(dict.fromkeys(names))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python experiments/simulation.py",
        description="Simulation study of the MEMoE against a shared-variance mixture, a MoE "
                    "without random effects and the LMM (see sim_design.py).")
    default = StudyConfig()
    parser.add_argument("--reps", type=int, default=default.reps,
                        help=f"replications per setting (default {default.reps})")
    parser.add_argument("--out", default="simulation_study", help="output folder")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--settings", nargs="+", metavar="NAME",
                        help=f"subset of {', '.join(SETTINGS)} (space or comma separated)")
    parser.add_argument("--models", nargs="+", metavar="NAME",
                        help=f"subset of {', '.join(MODELS)}")
    parser.add_argument("--n-subjects", type=int, default=default.n_subjects,
                        help=f"training subjects per replication (default {default.n_subjects})")
    parser.add_argument("--n-test", type=int, default=None,
                        help="held-out subjects per replication (default n_subjects / 2)")
    parser.add_argument("--n-starts", type=int, default=default.n_starts,
                        help=f"EM starts per fit (default {default.n_starts})")
    parser.add_argument("--seed", type=int, default=default.seed,
                        help=f"root seed (default {default.seed})")
    parser.add_argument("--resume", action="store_true",
                        help="keep the finished replications in --out and run the others")
    parser.add_argument("--tables-only", action="store_true",
                        help="rebuild tables, plots and README from --out/raw without fitting")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if args.tables_only:
        write_outputs(args.out, progress=not args.quiet)
        return 0
    try:
        settings = _settings_arg(args.settings)
        models = (tuple(dict.fromkeys(v for value in args.models for v in value.split(",") if v))
                  if args.models else tuple(MODELS))
        config = StudyConfig(reps=args.reps, n_subjects=args.n_subjects,
                             n_test=args.n_test or max(args.n_subjects // 2, 1),
                             n_starts=args.n_starts, seed=args.seed, settings=settings,
                             models=models)
    except (ValueError, argparse.ArgumentTypeError) as err:
        parser.error(str(err))
    run_study(args.out, config, workers=args.workers, progress=not args.quiet,
              resume=args.resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())   # the workers unpickle their jobs from sim_replication, not __main__
