"""Safety perception: a linear probe on frozen features, Place Pulse 2.0 style (Table 3).

Input is either Place Pulse 2.0's pairwise votes or per-image scores:

Votes (``votes.csv`` of the PP2 release, Dubey et al. 2016)
    One row per comparison: ``left_id``, ``right_id``, ``winner`` (``left``, ``right`` or
    ``equal``), the places (``left_lat, left_long, right_lat, right_long``) and the
    question in ``category`` (``safety``, ``lively``, ``beautiful``, ``wealthy``,
    ``depressing``, ``boring``). Other spellings are accepted: ``left``/``right`` for the
    ids, ``choice`` for the winner, ``question``/``study_question`` for the category, whose
    safety value may read ``safety``, ``safer`` or ``safe``. Only the ``category`` votes
    count (all votes when there is no category column).
Scores
    A CSV of ``image_id`` (or ``id``, ``_id``, ``location_id``) and ``score`` (or
    ``safety``, ``q_score``, ``qscore``) on 0 to 10.

Votes become one score per image by the Q-score of Salesses, Schechtner and Hidalgo (2013),
"The Collaborative Image of The City", PLoS ONE 8(7): e68400. For image ``i`` with ``w_i``
wins, ``l_i`` losses and ``t_i`` ties (``equal`` votes)::

    W_i = w_i / (w_i + l_i + t_i)        L_i = l_i / (w_i + l_i + t_i)

    Q_i = 10/3 * (W_i + (1/w_i) sum_{j beaten by i} W_j - (1/l_i) sum_{j that beat i} L_j + 1)

The sums run over comparisons (an image beaten twice counts twice); a mean over no
comparisons is 0. Each of the three terms lies in [0, 1], so ``Q`` lies in [0, 10]: the win
rate, corrected up for beating images that win often and down for losing to images that
lose often.

Labels: score < 3.5 is unsafe (0), score > 6.5 safe (1), the rest dropped (the paper's
cut). A seeded stratified split (80/20 by default) is shared by every encoder. The probe is
scikit-learn's ``StandardScaler`` (fit on the training images) followed by
``SGDClassifier(loss="log_loss", max_iter=epochs, tol=None)``: logistic regression by
stochastic gradient descent for exactly ``epochs`` passes (20, the paper's "linear binary
classification for 20 epochs"), seeded. Accuracy, precision, recall and F1 of the safe class
and the ROC AUC come in percent; the AUC is computed from the predicted probabilities
unless ``hard_auc`` asks for the AUC of the hard 0/1 predictions, which is what the
authors' numbers are (it equals balanced accuracy).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._errors import InputError, InputFileError, Stopped
from .._files import not_a_file

log = logging.getLogger(__name__)

UNSAFE_BELOW = 3.5
SAFE_ABOVE = 6.5
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png")
COLUMNS: tuple[str, ...] = (
    "model", "n_train", "n_test", "accuracy", "precision", "recall", "f1", "auc",
)  # fmt: skip

_LEFT = ("left_id", "left", "left_image", "image_left")
_RIGHT = ("right_id", "right", "right_image", "image_right")
_WINNER = ("winner", "choice")
_CATEGORY = ("category", "question", "study_question")
_ID = ("image_id", "id", "_id", "location_id", "image")
_SCORE = ("score", "safety", "q_score", "qscore", "safety_score")
_SAFETY_WORDS = {"safety", "safer", "safe"}


def _pick(columns: Sequence[str], names: Sequence[str]) -> str | None:
    lower = {c.lower().strip(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


# ----------------------------------------------------------------------- scores
def qscores(votes: pd.DataFrame) -> pd.Series:
    """Q-score (0 to 10) of every image in ``votes`` (see the module docstring).

    Parameters
    ----------
    votes
        Columns ``left_id``, ``right_id`` and ``winner`` (``left``, ``right``, ``equal``).

    Returns
    -------
    pandas.Series
        Indexed by image id (as strings), sorted by id, named ``score``.
    """
    left = votes["left_id"].astype(str).to_numpy()
    right = votes["right_id"].astype(str).to_numpy()
    winner = votes["winner"].astype(str).str.strip().str.lower().to_numpy()
    bad = ~np.isin(winner, ["left", "right", "equal"])
    if bad.any():
        raise InputError(
            f"{int(bad.sum())} votes have a winner other than left, right or equal "
            f"(first: {votes['winner'].to_numpy()[bad][0]!r}); fix the votes file"
        )
    left_won, right_won = winner == "left", winner == "right"
    # one (winner, loser) row per decided comparison, one row per image per comparison
    won_by = np.concatenate([left[left_won], right[right_won]])
    lost_by = np.concatenate([right[left_won], left[right_won]])
    ids = pd.Index(np.unique(np.concatenate([left, right])))
    n = pd.Series(np.concatenate([left, right])).value_counts().reindex(ids).to_numpy(float)
    w = pd.Series(won_by).value_counts().reindex(ids, fill_value=0).to_numpy(float)
    l_ = pd.Series(lost_by).value_counts().reindex(ids, fill_value=0).to_numpy(float)
    rate_w, rate_l = w / n, l_ / n
    at_winner, at_loser = ids.get_indexer(won_by), ids.get_indexer(lost_by)
    # sum over the images i beat of their win rate; over the images that beat i of their
    # loss rate
    beaten_w = np.bincount(at_winner, weights=rate_w[at_loser], minlength=len(ids))
    beaten_by_l = np.bincount(at_loser, weights=rate_l[at_winner], minlength=len(ids))
    mean_w = np.divide(beaten_w, w, out=np.zeros(len(ids)), where=w > 0)
    mean_l = np.divide(beaten_by_l, l_, out=np.zeros(len(ids)), where=l_ > 0)
    q = 10.0 / 3.0 * (rate_w + mean_w - mean_l + 1.0)
    return pd.Series(q, index=ids, name="score")


def scores_from_file(path: str | os.PathLike[str], *, category: str = "safety") -> pd.Series:
    """Per-image scores from a PP2 votes CSV (Q-scores of ``category``) or a scores CSV."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputFileError(f"`pp2` file {p} {not_a_file(p)}; give the votes or scores CSV")
    try:
        frame = pd.read_csv(p, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises several kinds on a bad file
        raise InputFileError(f"cannot read `pp2` file {p}: {exc}; give a CSV") from exc
    cols = list(frame.columns)
    left, right, winner = _pick(cols, _LEFT), _pick(cols, _RIGHT), _pick(cols, _WINNER)
    if left and right and winner:
        votes = frame.rename(columns={left: "left_id", right: "right_id", winner: "winner"})
        cat = _pick(cols, _CATEGORY)
        if cat is not None:
            values = votes[cat].astype(str).str.strip().str.lower()
            wanted = category.strip().lower()
            keep = values.isin(_SAFETY_WORDS) if wanted in _SAFETY_WORDS else values == wanted
            if not keep.any():
                found = ", ".join(sorted(values.unique())[:8])
                raise InputError(
                    f"no vote in {p.name} is about {category!r} (its categories: {found}); "
                    f"choose one with `category`"
                )
            votes = votes[keep.to_numpy()]
        if votes.empty:
            raise InputError(f"{p.name} holds no votes; give a votes file with rows")
        return qscores(votes)
    ident, score = _pick(cols, _ID), _pick(cols, _SCORE)
    if ident and score:
        values = pd.to_numeric(frame[score], errors="coerce")
        if values.isna().any():
            raise InputError(
                f"{int(values.isna().sum())} scores in {p.name} are not numbers; fix the file"
            )
        out = pd.Series(values.to_numpy(float), index=frame[ident].astype(str), name="score")
        if out.index.duplicated().any():
            raise InputError(
                f"image {out.index[out.index.duplicated()][0]!r} has two scores in {p.name}; "
                "keep one row per image"
            )
        return out.sort_index()
    raise InputError(
        f"{p.name} is neither PP2 votes (left_id, right_id, winner[, category]) nor scores "
        f"(image_id, score); its columns: {', '.join(cols[:10])}"
    )


def labels_from_scores(
    scores: pd.Series, *, low: float = UNSAFE_BELOW, high: float = SAFE_ABOVE
) -> pd.Series:
    """0 (unsafe) below ``low``, 1 (safe) above ``high``; images in between are dropped."""
    keep = (scores < low) | (scores > high)
    return (scores[keep] > high).astype(np.int64).rename("label")


def image_files(folder: str | os.PathLike[str], ids: Sequence[str]) -> list[Path]:
    """``<id>.jpg`` (or .jpeg, .png) in ``folder`` for each id; a missing one is an error."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise InputFileError(f"`images` folder {root} does not exist; give the image folder")
    by_stem: dict[str, Path] = {}
    for entry in root.iterdir():
        if entry.suffix.lower() in IMAGE_SUFFIXES:
            by_stem.setdefault(entry.stem, entry)
    missing = [i for i in ids if i not in by_stem]
    if missing:
        raise InputFileError(
            f"{len(missing):,} of {len(ids):,} images named in `pp2` are not in {root} "
            f"(first: {missing[0]}.jpg); give the folder that holds <image id>.jpg"
        )
    return [by_stem[i] for i in ids]


# ------------------------------------------------------------------------- probe
def split_labels(
    labels: pd.Series, *, test_size: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of a seeded stratified train/test split of ``labels``."""
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise InputError(f"`test_size` must be between 0 and 1, got {test_size}")
    y = labels.to_numpy()
    if len(y) == 0:
        raise InputError(
            f"no image scores below {UNSAFE_BELOW} or above {SAFE_ABOVE}; "
            "nothing to classify: give more votes or images"
        )
    counts = np.bincount(y, minlength=2)
    if counts.min() == 0:
        which = "safe (> 6.5)" if counts[1] == 0 else "unsafe (< 3.5)"
        raise InputError(
            f"all {len(y):,} labelled images are of one class: none is {which}; "
            "a probe needs both, give more varied images"
        )
    n_test = int(np.ceil(test_size * len(y)))
    if counts.min() < 2 or n_test < 2 or len(y) - n_test < 2:
        raise InputError(
            f"{counts[0]} unsafe and {counts[1]} safe images are too few to split with "
            f"`test_size` {test_size}; give more images"
        )
    positions = np.arange(len(y))
    train, test = train_test_split(positions, test_size=test_size, random_state=seed, stratify=y)
    return np.sort(train), np.sort(test)


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, *, epochs: int = 20, seed: int = 0):
    """``StandardScaler -> SGDClassifier(log_loss)`` trained ``epochs`` passes, seeded."""
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    model = Pipeline(
        [
            ("scale", StandardScaler()),
            ("sgd", SGDClassifier(loss="log_loss", max_iter=epochs, tol=None, random_state=seed)),
        ]
    )
    return model.fit(np.asarray(x_train, np.float64), y_train)


def probe_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, proba: np.ndarray, *, hard_auc: bool = False
) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (safe = positive) and ROC AUC, in percent."""
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    both = len(np.unique(y_true)) == 2
    auc = roc_auc_score(y_true, y_pred if hard_auc else proba) if both else np.nan
    return {
        "accuracy": 100.0 * accuracy_score(y_true, y_pred),
        "precision": 100.0 * precision_score(y_true, y_pred, zero_division=0),
        "recall": 100.0 * recall_score(y_true, y_pred, zero_division=0),
        "f1": 100.0 * f1_score(y_true, y_pred, zero_division=0),
        "auc": 100.0 * float(auc),
    }


def safety_table(
    pp2: str | os.PathLike[str],
    specs: Sequence[Any],
    *,
    images: str | os.PathLike[str] | None = None,
    category: str = "safety",
    seed: int = 0,
    test_size: float = 0.2,
    epochs: int = 20,
    hard_auc: bool = False,
    image_size: int | None = None,
    batch_size: int = 64,
    workers: int = 2,
    device: str = "auto",
    progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Table 3 for the encoders ``specs`` (:func:`~urbanvis.evaluate.encoders.encoder_specs`).

    Every input is checked (votes, images, labels, split) before any descriptor is
    computed. Returns ``table`` (columns :data:`COLUMNS`), ``scores`` (per image),
    ``labels``, ``train``/``test`` (positions in ``labels``) and ``predictions``
    (encoder label -> test probabilities).
    """
    from .encoders import features_from_files

    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"`epochs` must be a whole number of at least 1, got {epochs!r}")
    scores = scores_from_file(pp2, category=category)
    folder = Path(images) if images is not None else Path(pp2).expanduser().parent / "images"
    image_files(folder, list(scores.index))  # every image named by the votes must be there
    labels = labels_from_scores(scores)
    train, test = split_labels(labels, test_size=test_size, seed=seed)
    paths = image_files(folder, list(labels.index))
    y = labels.to_numpy()
    rows, predictions = [], {}
    for k, spec in enumerate(specs):
        if should_stop is not None and should_stop():
            raise Stopped(f"stopped before encoder {spec.label!r}")
        if progress is not None:
            progress(k, len(specs), {})
        feats, _ = features_from_files(
            paths, spec, image_size=image_size, batch_size=batch_size, workers=workers,
            device=device, should_stop=should_stop,
        )  # fmt: skip
        model = fit_probe(feats[train], y[train], epochs=epochs, seed=seed)
        x_test = np.asarray(feats[test], np.float64)
        proba = model.predict_proba(x_test)[:, 1]
        pred = model.predict(x_test)
        predictions[spec.label] = proba
        metrics = probe_metrics(y[test], pred, proba, hard_auc=hard_auc)
        rows.append({"model": spec.label, "n_train": len(train), "n_test": len(test), **metrics})
        log.info("%s: accuracy %.1f %%, AUC %.1f %%", spec.label, metrics["accuracy"],
                 metrics["auc"])  # fmt: skip
    if progress is not None:
        progress(len(specs), len(specs), {})
    return {
        "table": pd.DataFrame(rows, columns=list(COLUMNS)),
        "scores": scores,
        "labels": labels,
        "train": train,
        "test": test,
        "predictions": predictions,
    }
