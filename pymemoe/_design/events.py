"""Times to event, one per subject: read from a long data frame and checked.

A joint model of trajectories and time to event (:mod:`pymemoe.families.joint`) needs, for
each subject of the fit, the time at which follow-up ended (``time``), how it ended
(``event``: 0 censored, 1..C the cause of the event; True/False for one cause) and the
covariates of the hazards (one design row per subject, from a one-sided formula). Long data
repeat them on every row of a subject; a value that varies within a subject, a missing or
non-positive time, an event code outside 0..C and a cause without any event are errors naming
the subject or the cause, since none of them has a meaning the fit could guess.

Rows measured after the subject's time (a trajectory recorded after death or censoring) are
counted, so that the caller can warn: they are kept, as the trajectory model takes them, but
the data are then probably not what the user meant.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np
import pandas as pd

from .checks import plain_label
from .subject_level import subject_design, subject_values
from .subjects import group_labels
from .variables import data_columns_of_code

__all__ = ["SubjectEvents", "subject_events", "hazard_design", "rows_after_time",
           "subject_covariates"]


@dataclass(frozen=True, eq=False)
class SubjectEvents:
    """The time-to-event data of the subjects of a model, in the model's subject order.

    Attributes
    ----------
    time : ndarray (N,)       follow-up time T_i > 0 (event or censoring)
    cause : ndarray (N,) int  0 censored, 1..C the cause of the event; -1: no event
                              information (new subjects of a prediction)
    exog : ndarray (N, r)     design of the hazards' covariates
    exog_names : tuple of str the design's column names
    cause_names : tuple of str  one name per cause (C)
    subjects : Index or None  the subjects' labels (None in blocks of a fit)
    entry : ndarray (N,) or None  delayed entry T0_i, 0 <= T0_i < T_i: the subject is in
                              the data because it was event-free at T0_i (left truncation);
                              None: every subject followed from time 0
    common_names : tuple of str  the columns of ``exog`` whose effects are common to all
                              experts (the last ones; from ``common_formula``)
    """

    time: np.ndarray
    cause: np.ndarray
    exog: np.ndarray
    exog_names: tuple[str, ...]
    cause_names: tuple[str, ...]
    subjects: pd.Index | None = None
    entry: np.ndarray | None = None
    common_names: tuple[str, ...] = ()

    @property
    def at_risk_time(self) -> np.ndarray:
        """Time at risk in the data, T_i - T0_i (T_i without delayed entry), (N,)."""
        return self.time if self.entry is None else self.time - self.entry

    def aligned(self, subjects: pd.Index) -> "SubjectEvents":
        """The events of ``subjects`` (a model's order), without their labels; a ValueError
        names a subject they lack."""
        if self.subjects is None:
            raise ValueError("these events have no subject labels to align")
        where = self.subjects.get_indexer(subjects)
        if (where < 0).any():
            missing = subjects[np.flatnonzero(where < 0)[0]]
            raise ValueError(f"the survival data have no row for subject "
                             f"{plain_label(missing)!r}")
        return dataclasses.replace(self.take(where), subjects=None)

    @property
    def n_causes(self) -> int:
        return len(self.cause_names)

    @property
    def indicators(self) -> np.ndarray:
        """[d_i = c] for the causes c = 1..C, (N, C) floats (all 0 for a censored subject
        and for one without event information)."""
        return (self.cause[:, None] == np.arange(1, self.n_causes + 1)).astype(float)

    def take(self, index) -> "SubjectEvents":
        """The events of the subjects at ``index`` (a slice or positions)."""
        return SubjectEvents(time=self.time[index], cause=self.cause[index],
                             exog=self.exog[index], exog_names=self.exog_names,
                             cause_names=self.cause_names,
                             entry=None if self.entry is None else self.entry[index],
                             common_names=self.common_names)

    @classmethod
    def concatenate(cls, parts: "Sequence[SubjectEvents]") -> "SubjectEvents":
        """The events of consecutive groups of subjects as one object."""
        if len(parts) == 1:
            return parts[0]
        entry = (None if all(p.entry is None for p in parts)
                 else np.concatenate([np.zeros(p.time.shape) if p.entry is None else p.entry
                                      for p in parts]))
        return cls(time=np.concatenate([p.time for p in parts]),
                   cause=np.concatenate([p.cause for p in parts]),
                   exog=np.concatenate([p.exog for p in parts]),
                   exog_names=parts[0].exog_names, cause_names=parts[0].cause_names,
                   entry=entry, common_names=parts[0].common_names)

    @classmethod
    def unknown(cls, n_subjects: int, exog_names: Sequence[str],
                cause_names: Sequence[str]) -> "SubjectEvents":
        """Subjects without event information (cause -1): their time-to-event terms are 0,
        so their posterior rests on their trajectory alone."""
        return cls(time=np.ones(n_subjects), cause=np.full(n_subjects, -1),
                   exog=np.zeros((n_subjects, len(exog_names))), exog_names=tuple(exog_names),
                   cause_names=tuple(cause_names))


def _more(n: int) -> str:
    """`` (n subjects in all)`` after the first subject named, when there are others."""
    return "" if n <= 1 else f" ({n} subjects in all)"


def _cause_codes(values: pd.Series, what: str, causes: Sequence[str] | None,
                 subjects: pd.Index) -> tuple[np.ndarray, tuple[str, ...]]:
    """Integer causes 0..C of each subject, and the causes' names."""
    raw = values.to_numpy(dtype=float)
    missing = np.flatnonzero(~np.isfinite(raw))
    if missing.size:
        raise ValueError(f"{what} is missing for subject {plain_label(subjects[missing[0]])!r} "
                         f"{_more(missing.size)}; code 0 for censored, 1..C for the cause")
    bad = np.flatnonzero((raw != np.round(raw)) | (raw < 0))
    if bad.size:
        raise ValueError(f"{what} of subject {plain_label(subjects[bad[0]])!r} is {raw[bad[0]]:g}; "
                         f"it must be 0 (censored) or a cause 1..C")
    codes = raw.astype(int)
    n_causes = int(codes.max()) if causes is None else len(causes)
    if n_causes == 0:
        raise ValueError(f"{what}: no subject has an event (every code is 0); the hazards "
                         f"cannot be estimated")
    above = np.flatnonzero(codes > n_causes)
    if above.size:
        raise ValueError(f"{what} of subject {plain_label(subjects[above[0]])!r} is "
                         f"{codes[above[0]]}, but causes={list(causes)} names "
                         f"{n_causes} causes")
    counts = np.bincount(codes, minlength=n_causes + 1)
    empty = np.flatnonzero(counts[1:] == 0)
    if empty.size:
        c = int(empty[0]) + 1
        raise ValueError(f"{what}: cause {c} has no event in the data; its hazard cannot be "
                         f"estimated (recode the causes 1..C without gaps)")
    names = (tuple(str(c) for c in causes) if causes is not None
             else ("event",) if n_causes == 1 else tuple(str(c) for c in range(1, n_causes + 1)))
    return codes, names


def subject_events(data: pd.DataFrame, groups, subjects: pd.Index, *, time: Hashable,
                   event: Hashable, formula: str = "~1", causes: Sequence[str] | None = None,
                   entry: Hashable | None = None, common_formula: str | None = None,
                   eval_depth: int = 0) -> SubjectEvents:
    """The checked time-to-event data of ``subjects`` from the long frame ``data``.

    Parameters
    ----------
    data : DataFrame
        The analysis data (one row per measurement, or per subject); never modified.
    groups : str or array-like
        The subject column (or labels per row), as given to the model.
    subjects : Index
        The model's subjects, in its order.
    time, event : column names
        Follow-up time (> 0) and its end: 0 censored, 1..C the cause (True/False: one cause).
    formula : str
        One-sided formula of the hazards' covariates, evaluated per subject.
    causes : list of str, optional
        Names of the causes 1..C (default: "event" for one cause, else "1".."C").
    entry : column name, optional
        Delayed entry T0_i (left truncation), 0 <= T0_i < T_i.
    common_formula : str, optional
        One-sided formula of covariates with effects common to all experts: its columns
        (without an intercept) follow ``formula``'s.

    Examples
    --------
    >>> df = pd.DataFrame({"id": [1, 1, 2], "T": [2.0, 2.0, 3.5], "d": [1, 1, 0],
    ...                    "age": [50.0, 50.0, 61.0]})
    >>> ev = subject_events(df, "id", pd.Index([1, 2]), time="T", event="d", formula="~ age")
    >>> ev.time.tolist(), ev.cause.tolist(), ev.exog_names, ev.cause_names
    ([2.0, 3.5], [1, 0], ('Intercept', 'age'), ('event',))
    """
    for role, column in (("time", time), ("event", event), ("entry", entry)):
        if column is not None and column not in data.columns:
            raise ValueError(f"survival {role} {column!r} is not a column of the data")
    t = subject_values(data, time, groups, None, subjects,
                       what=f"survival time {time!r}").to_numpy(dtype=float)
    missing = np.flatnonzero(~np.isfinite(t))
    if missing.size:
        raise ValueError(f"survival time {time!r} is missing for subject "
                         f"{plain_label(subjects[missing[0]])!r}{_more(missing.size)}")
    nonpositive = np.flatnonzero(t <= 0)
    if nonpositive.size:
        i = nonpositive[0]
        raise ValueError(f"survival time {time!r} of subject {plain_label(subjects[i])!r} is "
                         f"{t[i]:g}; times must be positive (measured from the time origin "
                         f"of the trajectories)")
    t0 = None if entry is None else _entry_times(data, entry, groups, subjects, time, t)
    status = subject_values(data, event, groups, None, subjects, what=f"event {event!r}")
    codes, names = _cause_codes(status, f"event {event!r}", causes, subjects)
    exog, exog_names, common = hazard_design(formula, common_formula, data, groups, None,
                                             subjects, eval_depth=eval_depth + 1)
    return SubjectEvents(time=t, cause=codes, exog=exog, exog_names=tuple(exog_names),
                         cause_names=names, subjects=subjects, entry=t0,
                         common_names=tuple(common))


def hazard_design(formula: str, common_formula: str | None, data: pd.DataFrame, groups,
                  fitted_groups, subjects: pd.Index, eval_depth: int = 0
                  ) -> tuple[np.ndarray, list[str], list[str]]:
    """The hazards' design of ``subjects``, one row each: ``formula``'s columns, then
    ``common_formula``'s without its intercept; the names of all columns and of the latter.
    A ValueError names a subject whose covariates are missing or a column in both
    formulas."""
    exog, names = subject_design(formula, data, groups, fitted_groups, subjects,
                                 eval_depth=eval_depth + 1)
    names, common_names = list(names), []
    if common_formula is not None:
        common, common_names = subject_design(common_formula, data, groups, fitted_groups,
                                              subjects, eval_depth=eval_depth + 1)
        keep = [j for j, name in enumerate(common_names) if name != "Intercept"]
        both = sorted(set(names) & {common_names[j] for j in keep})
        if both:
            raise ValueError(f"survival formula {formula!r} and common_formula "
                             f"{common_formula!r} both have {both[0]!r}: a covariate's effect "
                             f"is either each expert's own or common to all")
        exog = np.column_stack([exog, common[:, keep]])
        common_names = [common_names[j] for j in keep]
        names += common_names
    incomplete = np.flatnonzero(~np.isfinite(exog).all(axis=1))
    if incomplete.size:
        which = formula if common_formula is None else f"{formula} / {common_formula}"
        raise ValueError(f"survival formula {which!r} is missing for subject "
                         f"{plain_label(subjects[incomplete[0]])!r}{_more(incomplete.size)}")
    return exog, names, common_names


def _entry_times(data: pd.DataFrame, entry: Hashable, groups, subjects: pd.Index,
                 time: Hashable, t: np.ndarray) -> np.ndarray:
    """The checked entry times T0_i (0 <= T0_i < T_i) of ``subjects``."""
    t0 = subject_values(data, entry, groups, None, subjects,
                        what=f"survival entry {entry!r}").to_numpy(dtype=float)
    missing = np.flatnonzero(~np.isfinite(t0))
    if missing.size:
        raise ValueError(f"survival entry {entry!r} is missing for subject "
                         f"{plain_label(subjects[missing[0]])!r}{_more(missing.size)} (0 for a "
                         f"subject followed from the time origin)")
    negative = np.flatnonzero(t0 < 0)
    if negative.size:
        i = negative[0]
        raise ValueError(f"survival entry {entry!r} of subject {plain_label(subjects[i])!r} is "
                         f"{t0[i]:g}; entry times must be >= 0")
    late = np.flatnonzero(t0 >= t)
    if late.size:
        i = late[0]
        raise ValueError(f"survival entry {entry!r} of subject {plain_label(subjects[i])!r} is "
                         f"{t0[i]:g}, at or after its follow-up time {time!r} {t[i]:g}: the "
                         f"subject would have had its event or been censored before entering "
                         f"the study{_more(late.size)}")
    return t0


def rows_after_time(data: pd.DataFrame, groups, subjects: pd.Index, visit_time: Hashable,
                    events: SubjectEvents) -> int:
    """How many rows of ``data`` are measured (column ``visit_time``) after their subject's
    follow-up time; rows of subjects outside ``subjects`` and missing times are not counted.

    Examples
    --------
    >>> df = pd.DataFrame({"id": [1, 1, 2], "t": [0.0, 3.0, 1.0]})
    >>> ev = SubjectEvents(time=np.array([2.0, 4.0]), cause=np.array([1, 0]),
    ...                    exog=np.ones((2, 1)), exog_names=("Intercept",), cause_names=("event",))
    >>> rows_after_time(df, "id", pd.Index([1, 2]), "t", ev)
    1
    """
    if visit_time not in data.columns:
        raise ValueError(f"survival visit_time {visit_time!r} is not a column of the data")
    labels, _ = group_labels(data, groups, fitted_column=None, missing_ok=True)
    where = subjects.get_indexer(pd.Index(labels))
    times = pd.to_numeric(data[visit_time], errors="coerce").to_numpy(dtype=float)
    rows = (where >= 0) & np.isfinite(times)
    return int(np.count_nonzero(times[rows] > events.time[where[rows]] * (1 + 1e-12)))


def subject_covariates(formula: str, data: pd.DataFrame, groups, subjects: pd.Index
                       ) -> pd.DataFrame:
    """The data columns that the one-sided ``formula`` reads, one row per subject of
    ``subjects`` (what a parametric bootstrap of a joint model needs to evaluate the hazards'
    formula again on its simulated data).

    Examples
    --------
    >>> df = pd.DataFrame({"id": [1, 1, 2], "age": [50.0, 50.0, 61.0], "y": [1.0, 2.0, 3.0]})
    >>> subject_covariates("~ np.log(age)", df, "id", pd.Index([1, 2]))["age"].tolist()
    [50.0, 61.0]
    """
    code = formula.split("~", 1)[1]
    columns = data_columns_of_code(code, set(data.columns))
    return pd.DataFrame({column: subject_values(data, column, groups, None, subjects,
                                                what=f"survival covariate {column!r}")
                         for column in columns}, index=subjects)
