"""Tables, plots and the README of the simulation study, from its raw results."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from pymemoe._tables import render_markdown

from sim_design import (MODEL_COLUMNS, MODELS, PARAM_COLUMNS, SETTINGS, Z95, StudyConfig,
                        raw_paths, sorted_raw)

__all__ = ["summarise_models", "summarise_parameters", "models_markdown",
           "parameters_markdown", "plot_pmse", "write_outputs"]


# -- summaries ------------------------------------------------------------------------------------

def _ordered(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Rows in the order of SETTINGS and MODELS."""
    settings = [s for s in SETTINGS if s in set(frame.index.get_level_values("setting"))]
    models = [m for m in MODELS if m in set(frame.index.get_level_values("model"))]
    full = pd.MultiIndex.from_product([settings, models], names=list(keys))
    return frame.reindex(full[full.isin(frame.index)])


def _best_share(ok: pd.DataFrame, column: str) -> pd.Series:
    """Share of replications of each setting in which each model has the smallest value."""
    valid = ok[np.isfinite(ok[column].to_numpy(dtype=float))]
    if valid.empty:
        return pd.Series(dtype=float)
    winners = valid.loc[valid.groupby(["setting", "rep"])[column].idxmin()]
    wins = winners.groupby(["setting", "model"]).size()
    n_reps = valid.groupby("setting")["rep"].nunique()
    share = wins / n_reps.reindex(wins.index.get_level_values("setting")).to_numpy()
    return share


def summarise_models(replications: pd.DataFrame) -> pd.DataFrame:
    """Per setting x model: fits, convergence, BIC, classification, PMSE and run time.

    Columns: ``fits`` (successful), ``failed``, ``converged`` (share), ``n_params``,
    ``bic_mean``, ``bic_sd``, ``bic_best`` (share of replications in which the model has the
    smallest BIC of the models fitted), ``accuracy`` / ``ari`` (training subjects, mean) and
    their SDs, ``accuracy_test`` / ``ari_test`` (held-out subjects), ``pmse_marginal_mean`` /
    ``_sd`` / ``_best`` and the same for ``pmse_dynamic``, ``time_fit`` and ``time_se``
    (mean seconds).
    """
    frame = replications.copy()
    ok = frame[frame["status"] == "ok"].copy()
    for col in MODEL_COLUMNS[4:]:
        if col in ok:
            ok[col] = pd.to_numeric(ok[col], errors="coerce")
    ok["converged"] = ok["converged"].astype(float)
    g = ok.groupby(["setting", "model"])
    failed = (frame["status"] != "ok").groupby([frame["setting"], frame["model"]]).sum()
    table = pd.DataFrame({
        "fits": g.size(),
        "failed": failed,
        "converged": g["converged"].mean(),
        "n_params": g["n_params"].median(),
        "bic_mean": g["bic"].mean(),
        "bic_sd": g["bic"].std(),
        "bic_best": _best_share(ok, "bic"),
        "accuracy": g["accuracy"].mean(),
        "accuracy_sd": g["accuracy"].std(),
        "ari": g["ari"].mean(),
        "ari_sd": g["ari"].std(),
        "accuracy_test": g["accuracy_test"].mean(),
        "ari_test": g["ari_test"].mean(),
        "pmse_marginal_mean": g["pmse_marginal"].mean(),
        "pmse_marginal_sd": g["pmse_marginal"].std(),
        "pmse_marginal_best": _best_share(ok, "pmse_marginal"),
        "pmse_dynamic_mean": g["pmse_dynamic"].mean(),
        "pmse_dynamic_sd": g["pmse_dynamic"].std(),
        "pmse_dynamic_best": _best_share(ok, "pmse_dynamic"),
        "time_fit": g["time_fit"].mean(),
        "time_se": g["time_se"].mean(),
    })
    table.index.names = ["setting", "model"]
    table["fits"] = table["fits"].fillna(0).astype(int)
    table["failed"] = table["failed"].fillna(0).astype(int)
    for col in ("bic_best", "pmse_marginal_best", "pmse_dynamic_best"):
        table[col] = table[col].where(table["fits"] == 0, table[col].fillna(0.0))
    return _ordered(table, ["setting", "model"])


def summarise_parameters(raw_parameters: pd.DataFrame) -> pd.DataFrame:
    """Per setting x model x parameter (true expert labels): truth, mean estimate, bias,
    empirical SD, RMSE, mean SE (oim, robust), coverage of the 95% Wald intervals (oim,
    robust; over the replications with a finite SE), ``n`` replications and ``n_se`` of them
    with a finite model-based SE."""
    d = raw_parameters.copy()
    d["expert"] = d["expert"].astype(str)
    d = sorted_raw(d, extra=["param_index"])
    d["error"] = d["estimate"] - d["truth"]
    d["sq_error"] = d["error"] ** 2
    for name in ("oim", "robust"):
        se = d[f"se_{name}"].to_numpy(dtype=float)
        finite = np.isfinite(se) & (se > 0)
        covered = np.abs(d["error"].to_numpy()) <= Z95 * np.where(finite, se, 0.0)
        d[f"cover_{name}"] = np.where(finite, covered.astype(float), np.nan)
        d[f"se_{name}"] = np.where(finite, se, np.nan)
    keys = ["setting", "model", "block", "expert", "term"]
    g = d.groupby(keys, sort=False)
    table = pd.DataFrame({
        "n": g.size(),
        "truth": g["truth"].first(),
        "mean": g["estimate"].mean(),
        "bias": g["error"].mean(),
        "sd": g["estimate"].std(),
        "rmse": np.sqrt(g["sq_error"].mean()),
        "se_oim": g["se_oim"].mean(),
        "se_robust": g["se_robust"].mean(),
        "cover_oim": g["cover_oim"].mean(),
        "cover_robust": g["cover_robust"].mean(),
        "n_se": g["se_oim"].count(),
    })
    return table


# -- rendering ------------------------------------------------------------------------------------

def _fmt(value, spec: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return ""
    return format(value, spec)


def _mean_sd(mean, sd, spec: str) -> str:
    if not np.isfinite(mean):
        return ""
    return f"{format(mean, spec)} ({format(sd, spec)})" if np.isfinite(sd) else format(mean, spec)


def models_markdown(table: pd.DataFrame) -> str:
    """The model table as Markdown, one section per setting."""
    parts = []
    for setting, block in table.groupby(level="setting", sort=False):
        rows = []
        for (_, model), r in block.iterrows():
            rows.append({
                "Model": MODELS[model].label if model in MODELS else model,
                "fits": f"{int(r['fits'])}" + (f" ({int(r['failed'])} failed)"
                                                 if r["failed"] else ""),
                "converged": _fmt(r["converged"], ".2f"),
                "df": _fmt(r["n_params"], ".0f"),
                "BIC mean (SD)": _mean_sd(r["bic_mean"], r["bic_sd"], ".1f"),
                "BIC best": _fmt(r["bic_best"], ".2f"),
                "accuracy": _fmt(r["accuracy"], ".3f"),
                "ARI": _fmt(r["ari"], ".3f"),
                "accuracy (test)": _fmt(r["accuracy_test"], ".3f"),
                "ARI (test)": _fmt(r["ari_test"], ".3f"),
                "PMSE marginal mean (SD)": _mean_sd(r["pmse_marginal_mean"],
                                                    r["pmse_marginal_sd"], ".4f"),
                "PMSE dynamic mean (SD)": _mean_sd(r["pmse_dynamic_mean"],
                                                   r["pmse_dynamic_sd"], ".4f"),
                "dyn. best": _fmt(r["pmse_dynamic_best"], ".2f"),
                "time (s)": _fmt(r["time_fit"], ".2f"),
            })
        title = SETTINGS[setting].title if setting in SETTINGS else setting
        parts.append(f"### {setting}: {title}\n\n" + _markdown(rows, 1))
    return "\n".join(parts)


def _markdown(rows: list[dict], n_text: int) -> str:
    """A Markdown table of pre-formatted cells: the first ``n_text`` columns left-aligned (labels),
    the others right-aligned (numbers)."""
    if not rows:
        return "(no rows)\n"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join(":---" if j < n_text else "---:" for j in range(len(columns))) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(row[c]).replace("|", "\\|") for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _param_name(block: str, expert: str, term: str) -> str:
    return f"{block}[{expert}]:{term}"


def parameters_markdown(table: pd.DataFrame) -> str:
    """The parameter table as Markdown, one section per setting."""
    parts = []
    for setting, block in table.groupby(level="setting", sort=False):
        rows = []
        for (_, model, b, e, t), r in block.iterrows():
            rows.append({
                "Model": MODELS[model].label if model in MODELS else model,
                "Parameter": _param_name(b, e, t),
                "truth": _fmt(r["truth"], ".3f"),
                "bias": _fmt(r["bias"], ".4f"),
                "SD": _fmt(r["sd"], ".4f"),
                "SE (oim)": _fmt(r["se_oim"], ".4f"),
                "SE (robust)": _fmt(r["se_robust"], ".4f"),
                "coverage (oim)": _fmt(r["cover_oim"], ".3f"),
                "coverage (robust)": _fmt(r["cover_robust"], ".3f"),
                "n": f"{int(r['n'])}",
            })
        title = SETTINGS[setting].title if setting in SETTINGS else setting
        parts.append(f"### {setting}: {title}\n\n" + _markdown(rows, 2))
    return "\n".join(parts)


def plot_pmse(replications: pd.DataFrame, column: str, path: Path, title: str) -> bool:
    """Box plots of ``column`` per setting (one panel each) and model; False without matplotlib."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    ok = replications[replications["status"] == "ok"]
    settings = [s for s in SETTINGS if s in set(ok["setting"])]
    models = [m for m in MODELS if m in set(ok["model"])]
    if not settings:
        return False
    ncol = min(3, len(settings))
    nrow = math.ceil(len(settings) / ncol)
    fig = Figure(figsize=(4.2 * ncol, 3.6 * nrow), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrow, ncol, squeeze=False)).ravel()
    short = {"memoe": "MEMoE", "shared": "shared", "moe": "MoE", "lmm": "LMM"}
    for ax, setting in zip(axes, settings):
        sub = ok[ok["setting"] == setting]
        values = [pd.to_numeric(sub.loc[sub["model"] == m, column], errors="coerce").dropna()
                  .to_numpy() for m in models]
        names = [short.get(m, m) for m in models]
        ax.boxplot(values, **({"tick_labels": names} if _has_tick_labels() else {"labels": names}))
        ax.set_title(setting, fontsize=10)
        ax.set_ylabel("PMSE")
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(settings):]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.savefig(path, dpi=120)
    return True


def _has_tick_labels() -> bool:
    import matplotlib
    major, minor = (int(x) for x in matplotlib.__version__.split(".")[:2])
    return (major, minor) >= (3, 9)


def _truth_table(settings: Iterable[str]) -> pd.DataFrame:
    rows = []
    for name in settings:
        s = SETTINGS[name]
        p = s.params
        row = {"setting": name, "gamma_2 (Int, x1, x2)": ", ".join(f"{v:g}" for v in p.gamma[1]),
               "errors": "normal" if s.errors == "normal" else f"{s.errors}({s.df:g})"}
        for k in range(p.n_experts):
            D = p.cov_re[k]
            sd = np.sqrt(np.diag(D))
            corr = D[0, 1] / (sd[0] * sd[1]) if sd.all() else np.nan
            row[f"beta_{k + 1} (Int, time)"] = ", ".join(f"{v:g}" for v in p.beta[k])
            row[f"SD(Int), SD(time), Corr [{k + 1}]"] = f"{sd[0]:g}, {sd[1]:g}, {corr:.2g}"
            row[f"sigma2_{k + 1}"] = f"{p.scale[k]:g}"
        rows.append(row)
    return pd.DataFrame(rows)


def _readme(config: StudyConfig, replications: pd.DataFrame, plots: dict[str, bool]) -> str:
    n_done = replications.groupby("setting")["rep"].nunique()
    done = ", ".join(f"{s}: {int(n_done.get(s, 0))}" for s in config.settings)
    model_lines = "\n".join(f"* `{m}` -- {MODELS[m].label}: {MODELS[m].description}."
                            for m in config.models)
    setting_lines = "\n".join(f"* `{s}` -- {SETTINGS[s].title}. Tests {SETTINGS[s].tests}."
                              for s in config.settings)
    plot_note = ("" if all(plots.values()) else
                 "\n(matplotlib is not installed: the box plots were skipped.)\n")
    return f"""# MEMoE simulation study

Written by `python experiments/simulation.py` (the docstring of `experiments/sim_design.py`
describes the design). Rebuild every table, plot and this file from the raw
results with `python experiments/simulation.py --out {{this folder}} --tables-only`.

## Design

* Replications per setting: {config.reps} (finished: {done}); seed {config.seed}
  (one `numpy.random.SeedSequence`, spawned per setting, replication and model).
* Subjects per replication: {config.n_subjects} for fitting + {config.n_test} held out.
  Visits: {config.visits[0]} to {config.visits[1]} per subject (uniform), regular over
  [0, {config.follow_up:g}] years; gating covariates x1, x2 ~ N(0, 1).
* Every model: `y ~ time`, fitted with {config.n_starts} EM starts (best kept, then polished).
* Dynamic prediction landmark: visits with time <= {config.landmark:g} are the history,
  visits after it are predicted.

### Settings (truth from `pymemoe.simulate.paper_settings()`; K = 2, expert 1 is the reference of the gating)

{setting_lines}

{render_markdown(_truth_table(config.settings))}
### Models

{model_lines}

## Files

* `config.json` -- the configuration of the run (reproduces the numbers).
* `raw/replications.csv` -- one row per setting x replication x model: `status` ("ok" or the
  error of a failed fit), `converged`, `n_params`, `llf`, `bic`, `accuracy`, `ari` (training
  subjects), `accuracy_test`, `ari_test` (held-out subjects), `pmse_marginal`, `pmse_dynamic`
  (held-out subjects), `n_dynamic` (visits scored dynamically), `time_fit`, `time_se`
  (seconds), `n_warnings` (warnings issued by the fit and the covariances, e.g. a variance at
  the boundary).
* `raw/parameters.csv` -- one row per setting x replication x model x comparable parameter,
  after matching the fitted experts to the true ones: `truth`, `estimate`, `se_oim`,
  `se_robust`.
* `summary_models.csv` / `summary_models.md` -- **model table**, per setting x model:
  successful fits (and failed ones), share converged, number of parameters (`df`), BIC mean
  (SD) and `BIC best` (share of replications in which the model has the smallest BIC of the
  four), classification accuracy and adjusted Rand index (ARI) on the training and on the
  held-out subjects, PMSE of the marginal and of the dynamic predictions of the held-out
  subjects (mean and SD over replications; `dyn. best`: share of replications with the
  smallest dynamic PMSE), mean fitting time.
* `summary_parameters.csv` / `summary_parameters.md` -- **parameter table**, per setting x
  model x parameter: truth, mean estimate, bias, empirical SD over replications, RMSE, mean
  model-based (inverse observed information) SE, mean robust (subject-level sandwich) SE,
  coverage of the 95% Wald intervals est +/- 1.96 SE with each SE, `n` replications (and
  `n_se` with a finite model-based SE; a variance at the boundary has none). Parameters are
  `block[expert]:term`: `gate[2]:x1` the gating coefficient of expert 2 against expert 1,
  `beta[k]:time` expert k's slope, `re_cov[k]:Var(Intercept)` etc. the entries of D_k
  (`all` = shared by both experts), `scale[k]:sigma2` the residual variance.
* `pmse_marginal.png`, `pmse_dynamic.png` -- box plots of the held-out PMSE over replications,
  one panel per setting, one box per model.
{plot_note}
## How to read the tables

* **Which parameters are compared.** The fitted experts are matched to the true experts by the
  permutation that maximises the agreement of the predicted classes (ties: nearest
  intercepts); the gating is then re-expressed against the matched expert 1 (with its SEs).
  The shared-variance model's D and sigma2 are compared only in settings where the truth has
  equal D_k and sigma2_k (examples 1 and 3); the MoE without random effects has no D and its
  residual variance absorbs the random-effect variance, so only its gating and fixed effects
  are compared; the **LMM has no parameter rows**: its one set of fixed effects is a
  population average, not a parameter of the two-expert truth. For the same reason the LMM's
  accuracy and ARI are blank (one class: its ARI would be 0, its accuracy the share of the
  larger expert).
* **Monte Carlo error.** With R replications a coverage near 0.95 has a Monte Carlo SE of
  sqrt(0.95 x 0.05 / R) = {math.sqrt(0.95 * 0.05 / max(config.reps, 1)):.3f}; a bias is
  significant when it exceeds about 2 SD / sqrt(R).
* **Coverage** near 0.95 with SE (mean) close to SD means the standard errors are right. In
  the misspecified (t errors) setting the model-based SEs of the variance parameters are
  expected to be too small and the robust ones not.
* **PMSE marginal** predicts a held-out subject from its gating covariates alone (the
  gating-weighted expert means); **PMSE dynamic** predicts its visits after the landmark from
  its visits up to it (posterior expert probabilities and random effects). The MoE without
  random effects can only use the history through the class probabilities; the LMM only
  through its random effects.
"""


def write_outputs(out, config: StudyConfig | None = None,
                  progress: bool = False) -> dict[str, pd.DataFrame]:
    """(Re)build the tables, plots and README of ``out`` from its ``raw/*.csv``."""
    out = Path(out)
    if config is None:
        config = StudyConfig.from_json(json.loads((out / "config.json").read_text()))
    reps_path, params_path = raw_paths(out)
    if not reps_path.exists():
        raise FileNotFoundError(f"{reps_path} does not exist: run the study first")
    replications = sorted_raw(pd.read_csv(reps_path))
    replications.to_csv(reps_path, index=False)
    if params_path.exists() and params_path.stat().st_size:
        raw_params = sorted_raw(pd.read_csv(params_path, dtype={"expert": str}),
                                 extra=["param_index"])
        raw_params.to_csv(params_path, index=False)
    else:
        raw_params = pd.DataFrame(columns=PARAM_COLUMNS)
    models = summarise_models(replications)
    models.to_csv(out / "summary_models.csv")
    (out / "summary_models.md").write_text(
        "# Model comparison (per setting x model)\n\n" + models_markdown(models))
    parameters = (summarise_parameters(raw_params) if len(raw_params)
                  else pd.DataFrame(columns=["n"]))
    parameters.to_csv(out / "summary_parameters.csv")
    (out / "summary_parameters.md").write_text(
        "# Parameter recovery and standard errors (per setting x model x parameter)\n\n"
        + (parameters_markdown(parameters) if len(raw_params) else "(no parameters)\n"))
    plots = {
        "pmse_marginal": plot_pmse(replications, "pmse_marginal", out / "pmse_marginal.png",
                                   "Held-out PMSE, marginal prediction (gating covariates)"),
        "pmse_dynamic": plot_pmse(replications, "pmse_dynamic", out / "pmse_dynamic.png",
                                  f"Held-out PMSE, dynamic prediction after t = "
                                  f"{config.landmark:g}"),
    }
    if not all(plots.values()):
        print("matplotlib is not available: the PMSE box plots were skipped", file=sys.stderr,
              flush=True)
    (out / "README.md").write_text(_readme(config, replications, plots))
    if progress:
        print(f"tables, plots and README written to {out}", flush=True)
    return {"models": models, "parameters": parameters, "replications": replications,
            "raw_parameters": raw_params}
