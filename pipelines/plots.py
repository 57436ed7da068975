"""PNG figures for DVC plots and MLflow: written atomically, deterministic bytes for the same data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from pipelines.io import atomic_path  # noqa: E402

_META = {"Software": None}


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90, bbox_inches="tight", metadata=_META)
    plt.close(fig)


def curves(
    path: Path, series: Mapping[str, pl.DataFrame], *, x: str, y: str, title: str, diagonal: bool = False
) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    for name, df in series.items():
        ax.plot(df[x].to_numpy(), df[y].to_numpy(), label=name)
    if diagonal:
        ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=0.8)
    ax.set_xlabel(x.replace("_", " "))
    ax.set_ylabel(y.replace("_", " "))
    ax.set_title(title)
    ax.legend(loc="best", fontsize=8)
    _save(fig, path)


def importance(path: Path, gains: Mapping[str, float], *, top: int = 20) -> None:
    items = sorted(gains.items(), key=lambda kv: -kv[1])[:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(items) + 1))
    ax.barh([k for k, _ in items], [v for _, v in items])
    ax.set_xlabel("total gain")
    ax.set_title("Feature importance (gain)")
    _save(fig, path)


def shap_summary(path: Path, contrib: np.ndarray, X: np.ndarray, names: Sequence[str]) -> None:
    """SHAP's own beeswarm (summary_plot), drawn from leadlift's exact contributions."""
    import shap

    np.random.seed(0)  # the beeswarm jitters points with numpy's global RNG: seed it so the PNG is reproducible
    shap.summary_plot(contrib, X, feature_names=list(names), show=False, max_display=20, plot_size=(7, 7))
    _save(plt.gcf(), path)


def threshold_sweep(
    path: Path, model: pl.DataFrame, legacy: pl.DataFrame, *, chosen: int, legacy_cutoffs: Sequence[int]
) -> None:
    """Precision, recall, handoffs/week and expected value against the 0-100 cutoff, model beside legacy rule."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for ax, col in zip(axes.flat, ("precision", "recall", "handoffs_per_week", "expected_value"), strict=True):
        ax.plot(model["threshold_score"], model[col], label="leadlift score")
        ax.plot(legacy["threshold_score"], legacy[col], label="legacy points", ls="--")
        ax.axvline(chosen, c="green", lw=1, label=f"chosen threshold ({chosen})")
        for c in legacy_cutoffs:
            ax.axvline(c, c="red", lw=0.8, ls=":", label=f"legacy cutoff {c}")
        ax.set_title(col.replace("_", " "))
        ax.set_xlabel("cutoff on the 0-100 scale")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Threshold sweep on the test period")
    _save(fig, path)
