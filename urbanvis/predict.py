"""Predict zone indicators from mean zone embeddings (design section 7, the paper's Table 2).

One scikit-learn Pipeline per indicator, ``StandardScaler -> PCA(0.99) -> LassoCV(cv=5)``,
fit on training zones only, so nothing of the held-out zones leaks into the scaler or the
PCA. Protocols: ``holdout`` (a seeded 70/30 split, the default) and ``kfold5`` (a seeded
outer 5-fold cross-validation; every labelled zone gets an out-of-fold prediction). R² is
reported per indicator and per topic (the mean over the topic's indicators).

The indicator tables (CSV or ACS) and topic maps come from :mod:`urbanvis.indicators`;
:func:`predict_study` and :func:`apply_study` run the whole step on a study.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd

from ._errors import InputError, InputFileError, Stopped
from ._files import not_a_file
from .indicators import (
    builtin_topics,
    csv_indicators_first,
    indicators_for_zones,
    join_indicators,
    resolve_topics,
)

log = logging.getLogger(__name__)

PROTOCOLS: tuple[str, ...] = ("holdout", "kfold5")
TEST_SIZE = 0.3
OUTER_FOLDS = 5
INNER_FOLDS = 5
MIN_LABELLED = 10


class Prediction(NamedTuple):
    """What :func:`predict_indicators` returns: unpack as ``predictions, scores, models``."""

    predictions: gpd.GeoDataFrame
    scores: pd.DataFrame
    models: dict[str, Any]


def make_pipeline(seed: int = 0):
    """``StandardScaler -> PCA(0.99) -> LassoCV(cv=5)``, unfitted."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LassoCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline(
        [
            ("scale", StandardScaler()),
            ("pca", PCA(n_components=0.99, svd_solver="full", random_state=seed)),
            ("lasso", LassoCV(cv=INNER_FOLDS, max_iter=20000, random_state=seed)),
        ]
    )


def predict_indicators(
    zone_frame: gpd.GeoDataFrame,
    features: np.ndarray,
    indicators: Sequence[str],
    *,
    id_field: str,
    protocol: Literal["holdout", "kfold5"] = "holdout",
    seed: int = 0,
    topics: Mapping[str, Sequence[str]] | None = None,
    progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Prediction:
    """Fit and evaluate one pipeline per indicator; predict every zone.

    Parameters
    ----------
    zone_frame
        Zones with ``id_field``, geometry, the indicator columns (NaN: unlabelled) and,
        optionally, ``flagged`` (zones under ``--min-images``: never trained or scored on).
    features
        Mean embedding per zone, row-aligned with ``zone_frame`` (NaN rows: no images).
    indicators
        The indicator columns to predict.
    protocol
        ``holdout``: one seeded 70/30 split of the usable zones; R² on the 30 %.
        ``kfold5``: seeded outer 5-fold CV; R² of the pooled out-of-fold predictions.
    seed
        Seeds the split (and the pipelines).
    topics
        Topic -> indicators, for the per-topic rows (default: the paper's topics,
        :func:`urbanvis.indicators.builtin_topics`); indicators in no topic go to ``Other``.
    progress, should_stop
        ``progress(indicators_done, indicators, {})`` after each indicator;
        ``should_stop()`` before each, raising :class:`urbanvis._errors.Stopped` when true.

    Returns
    -------
    Prediction
        ``predictions``: id, geometry, ``X`` and ``X_pred`` per indicator and ``split``
        (``train``/``test`` for holdout, ``fold`` 0-4 for kfold5; ``unlabelled`` zones and
        ``no-images`` zones are marked so); held-out predictions for labelled zones, the
        model fit on all labelled zones for the rest. ``scores``: one row per indicator
        and per topic (``topic``, ``indicator``, ``n_train``, ``n_test``, ``r2``).
        ``models``: indicator -> pipeline fit on all labelled zones.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import r2_score
    from sklearn.model_selection import KFold, train_test_split

    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    features = np.asarray(features, dtype=np.float64)
    if len(features) != len(zone_frame):
        raise InputError(f"{len(features)} feature rows for {len(zone_frame)} zones")
    indicators = list(indicators)
    if not indicators:
        raise InputError("no indicators to predict")
    has_images = np.isfinite(features).all(axis=1)
    flagged = np.zeros(len(zone_frame), dtype=bool)
    if "flagged" in zone_frame:
        flagged = zone_frame["flagged"].to_numpy(dtype=bool)
    usable = has_images & ~flagged
    labels = zone_frame[indicators].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    labelled_any = usable & np.isfinite(labels).any(axis=1)
    n_labelled = int(labelled_any.sum())
    folds_needed = OUTER_FOLDS if protocol == "kfold5" else 2
    if n_labelled < MIN_LABELLED:
        raise InputError(
            f"only {n_labelled} labelled zones with images: fewer than the {MIN_LABELLED} the "
            f"{folds_needed} outer folds/splits need (LassoCV(cv={INNER_FOLDS}) inside each); "
            f"label more zones, use smaller zones or lower `min_images`"
        )
    idx = np.flatnonzero(labelled_any)
    split = np.full(len(zone_frame), "unlabelled", dtype=object)
    split[~has_images] = "no-images"
    split[has_images & ~usable] = "flagged"
    if protocol == "holdout":
        train, test = train_test_split(idx, test_size=TEST_SIZE, random_state=seed)
        split[train], split[test] = "train", "test"
        folds = [(train, test)]
    else:
        kf = KFold(OUTER_FOLDS, shuffle=True, random_state=seed)
        folds = [(idx[a], idx[b]) for a, b in kf.split(idx)]
        for k, (_, test) in enumerate(folds):
            split[test] = str(k)

    out = gpd.GeoDataFrame(
        {id_field: zone_frame[id_field].to_numpy()},
        geometry=zone_frame.geometry.to_numpy(),
        crs=zone_frame.crs,
    )
    rows, models = [], {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for j, name in enumerate(indicators):
            if should_stop is not None and should_stop():
                raise Stopped(f"stopped before indicator {name!r}")
            if progress is not None:
                progress(j, len(indicators), {})
            y = labels[:, j]
            ok = usable & np.isfinite(y)
            pred = np.full(len(zone_frame), np.nan)
            n_train = n_test = 0
            for train, test in folds:
                train, test = train[ok[train]], test[ok[test]]
                if len(train) < INNER_FOLDS or len(test) == 0:
                    continue
                model = make_pipeline(seed).fit(features[train], y[train])
                pred[test] = model.predict(features[test])
                if protocol == "holdout":
                    pred[train] = model.predict(features[train])
                n_train, n_test = n_train + len(train), n_test + len(test)
            scored = np.flatnonzero(np.isin(split, ["test"]) if protocol == "holdout"
                                    else np.char.isdigit(split.astype(str)))  # fmt: skip
            scored = scored[ok[scored] & np.isfinite(pred[scored])]
            r2 = float(r2_score(y[scored], pred[scored])) if len(scored) >= 2 else np.nan
            final = make_pipeline(seed).fit(features[ok], y[ok])
            models[name] = final
            rest = has_images & np.isnan(pred)
            if rest.any():
                pred[rest] = final.predict(features[rest])
            out[name] = y
            out[f"{name}_pred"] = pred
            rows.append(
                {"indicator": name, "n_train": n_train // len(folds), "n_test": n_test, "r2": r2}
            )
    out["split"] = split
    scores = _with_topics(pd.DataFrame(rows), topics if topics is not None else builtin_topics())
    log.info(
        "%s: %d indicators on %d labelled zones; mean R² %.3f",
        protocol,
        len(indicators),
        n_labelled,
        float(np.nanmean(scores.loc[scores["indicator"] != "", "r2"])),
    )
    return Prediction(out, scores, models)


def apply_models(
    models: Mapping[str, Any], zone_frame: gpd.GeoDataFrame, features: np.ndarray, *, id_field: str
) -> gpd.GeoDataFrame:
    """Predict every zone with images using fitted pipelines (no labels needed)."""
    features = np.asarray(features, dtype=np.float64)
    has_images = np.isfinite(features).all(axis=1)
    out = gpd.GeoDataFrame(
        {id_field: zone_frame[id_field].to_numpy()},
        geometry=zone_frame.geometry.to_numpy(),
        crs=zone_frame.crs,
    )
    for name, model in models.items():
        expected = getattr(model, "n_features_in_", features.shape[1])
        if expected != features.shape[1]:
            raise InputError(
                f"the models expect {expected}-dimensional embeddings but these have "
                f"{features.shape[1]}; embed with the same model the predictors were fit on"
            )
        pred = np.full(len(zone_frame), np.nan)
        if has_images.any():
            pred[has_images] = model.predict(features[has_images])
        out[f"{name}_pred"] = pred
    out["split"] = np.where(has_images, "applied", "no-images")
    return out


def scores_markdown(scores: pd.DataFrame, *, title: str = "") -> str:
    """The scores as a Markdown table shaped like the paper's Table 2."""
    lines = [f"# {title}", ""] if title else []
    lines += ["| Topic | Indicator | n train | n test | R² |", "|---|---|---:|---:|---:|"]
    for row in scores.itertuples():
        name = row.indicator or f"**{row.topic} (mean)**"
        r2 = "" if pd.isna(row.r2) else f"{row.r2:.3f}"
        n_train = "" if pd.isna(row.n_train) else f"{int(row.n_train)}"
        n_test = "" if pd.isna(row.n_test) else f"{int(row.n_test)}"
        lines.append(f"| {row.topic} | {name} | {n_train} | {n_test} | {r2} |")
    return "\n".join(lines) + "\n"


def _with_topics(scores: pd.DataFrame, topics: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Indicator rows grouped by topic, each topic followed by its mean-R² row."""
    owner: dict[str, str] = {}
    for topic, names in topics.items():
        for name in names:
            owner.setdefault(name, topic)
    scores = scores.assign(topic=scores["indicator"].map(owner).fillna("Other"))
    order = list(dict.fromkeys([*(t for t in topics if t in set(scores["topic"])), "Other"]))
    parts = []
    for topic in order:
        group = scores[scores["topic"] == topic]
        if group.empty:
            continue
        mean = {"topic": topic, "indicator": "", "n_train": np.nan, "n_test": np.nan,
                "r2": group["r2"].mean()}  # fmt: skip
        parts += [group, pd.DataFrame([mean])]
    return pd.concat(parts, ignore_index=True)[["topic", "indicator", "n_train", "n_test", "r2"]]


# ------------------------------------------------------------------- study runner
LEVELS: tuple[str, ...] = ("blockgroup", "tract", "hex", "buffer")


def study_zones(
    study,
    rows: gpd.GeoDataFrame,
    *,
    level: str,
    zones: str | os.PathLike[str] | None = None,
    zones_layer: str | None = None,
    id_field: str = "GEOID",
    cell_size: float = 500.0,
    buffer: float = 100.0,
    tiger_url: str | None = None,
    tiger_year: int = 2023,
) -> tuple[gpd.GeoDataFrame, str]:
    """The zones of a level: from ``zones`` (a file), TIGER/Line, or a grid over the captures.

    Without ``zones``, ``blockgroup`` and ``tract`` zones are the Census TIGER/Line
    polygons of ``tiger_year`` that intersect the captures' bounding box (downloaded once
    and cached, see :func:`urbanvis.tiger.tiger_zones`); their GEOID goes in ``id_field``.
    ``hex`` and ``buffer`` zones are grids.

    Returns the zones and their id field (``zone_id`` for grids).
    """
    from .tiger import tiger_zones
    from .zones import GRID_ID, zones_from_file, zones_from_grid

    if level not in LEVELS:
        raise InputError(f"unknown level {level!r}; choose one of {', '.join(LEVELS)}")
    if zones is not None:
        path = Path(zones)
        if not path.is_absolute() and not path.exists() and (study.root / path).exists():
            path = study.root / path
        return zones_from_file(path, id_field, layer=zones_layer), id_field
    if level == "hex":
        return zones_from_grid(rows, kind="hex", cell_size=cell_size), GRID_ID
    if level == "buffer":
        return zones_from_grid(rows, kind="square", cell_size=buffer), GRID_ID
    if rows.crs is None:
        raise InputError("the embeddings have no CRS; rerun 'urbanvis embed'")
    bounds = rows.to_crs(4326).total_bounds
    found = tiger_zones(bounds, level, year=tiger_year, base_url=tiger_url)  # type: ignore[arg-type]
    return found.rename(columns={"GEOID": id_field}), id_field


def predict_study(
    study,
    *,
    level: str = "blockgroup",
    indicators: str | os.PathLike[str],
    id_field: str = "GEOID",
    zones: str | os.PathLike[str] | None = None,
    zones_layer: str | None = None,
    columns: Sequence[str] | None = None,
    model: str | None = None,
    min_images: int = 1,
    protocol: Literal["holdout", "kfold5"] = "holdout",
    seed: int = 0,
    topics: str | os.PathLike[str] | Mapping[str, Sequence[str]] | None = None,
    cell_size: float = 500.0,
    buffer: float = 100.0,
    tiger_url: str | None = None,
    tiger_year: int = 2023,
    census_url: str | None = None,
    acs_year: int = 2022,
    progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Zones, mean embeddings, fitted predictors and R² for a study; writes the results.

    ``indicators`` is a CSV keyed by ``id_field`` or ``acs:VAR[,VAR...]``: American
    Community Survey 5-year estimates of ``acs_year`` for the zones' GEOIDs (see
    :func:`~urbanvis.indicators.indicators_from_acs`). Without ``zones``,
    ``blockgroup``/``tract`` zones come from TIGER/Line (``tiger_year``);
    ``tiger_url``/``census_url`` point at mirrors.

    ``topics`` groups the R² rows: a mapping topic -> indicators or a CSV with columns
    ``indicator`` and ``topic``; by default ``topics.csv`` beside the ``indicators`` CSV
    when there is one, else the paper's topics (see
    :func:`~urbanvis.indicators.resolve_topics`).

    Writes ``models/predict_<level>.joblib``, ``reports/predict_<level>.csv`` and ``.md``,
    and the layers ``zones_<level>`` and ``predictions_<level>``, only after every input
    has been checked and every model fit (a bad input writes nothing).
    """
    from .vectors import iter_vectors, read_embedding_rows
    from .zones import zone_embeddings_from_blocks

    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if level not in LEVELS:
        raise InputError(f"unknown level {level!r}; choose one of {', '.join(LEVELS)}")
    # a bad spec or column fails before any zone is read or downloaded
    csv_table = csv_indicators_first(
        indicators, id_field, level=level, zones=zones, columns=columns
    )
    topic_map = resolve_topics(topics, indicators)
    rows = read_embedding_rows(study, model=model)  # the vectors are read block by block
    zone_polys, id_field = study_zones(
        study, rows, level=level, zones=zones, zones_layer=zones_layer, id_field=id_field,
        cell_size=cell_size, buffer=buffer, tiger_url=tiger_url, tiger_year=tiger_year,
    )  # fmt: skip
    if csv_table is not None:
        table = csv_table
    else:
        table = indicators_for_zones(
            indicators, zone_polys, id_field, level=level, columns=columns, acs_year=acs_year,
            census_url=census_url,
        )  # fmt: skip
    zone_frame, features = zone_embeddings_from_blocks(
        rows, iter_vectors(study, str(rows["model"].iloc[0])), zone_polys, id_field=id_field,
        min_images=min_images,
    )  # fmt: skip
    joined, matches = join_indicators(zone_frame, table, id_field=id_field)
    names = [c for c in table.columns if c != id_field]
    result = predict_indicators(
        joined, features, names, id_field=id_field, protocol=protocol, seed=seed,
        topics=topic_map, progress=progress, should_stop=should_stop,
    )  # fmt: skip
    predictions = result.predictions.assign(
        n_images=joined["n_images"].to_numpy(), flagged=joined["flagged"].to_numpy()
    )
    bundle = {
        "level": level,
        "id_field": id_field,
        "embedding_model": str(rows["model"].iloc[0]) if len(rows) else None,
        "dim": int(features.shape[1]),
        "indicators": names,
        "protocol": protocol,
        "seed": seed,
        "models": result.models,
    }
    paths = _write_results(study, level, joined, predictions, result.scores, bundle)
    summary = {
        "zones": len(joined),
        "zones_with_images": int((joined["n_images"] > 0).sum()),
        "flagged": int(joined["flagged"].sum()),
        **matches,
        "indicators": len(names),
        "mean_r2": float(np.nanmean(result.scores.loc[result.scores["indicator"] != "", "r2"])),
        **paths,
    }
    return {"summary": summary, "scores": result.scores, "predictions": predictions}


def apply_study(
    study,
    models_path: str | os.PathLike[str],
    *,
    level: str = "blockgroup",
    zones: str | os.PathLike[str] | None = None,
    zones_layer: str | None = None,
    id_field: str | None = None,
    model: str | None = None,
    min_images: int = 1,
    cell_size: float = 500.0,
    buffer: float = 100.0,
    tiger_url: str | None = None,
    tiger_year: int = 2023,
) -> dict[str, Any]:
    """Predict a study's zones with models saved by :func:`predict_study` (no labels).

    Zones as in :func:`study_zones`: a file, TIGER/Line polygons or a grid.
    """
    from .vectors import iter_vectors, read_embedding_rows
    from .zones import zone_embeddings_from_blocks

    bundle = load_models(models_path)
    fitted_level = bundle.get("level")
    if fitted_level and fitted_level != level:
        raise InputError(
            f"{models_path} was fitted on {fitted_level} zones, not {level}; pass `level` "
            f"{fitted_level} (models do not carry across zone sizes)"
        )
    rows = read_embedding_rows(study, model=model)  # the vectors are read block by block
    if bundle.get("embedding_model") and bundle["embedding_model"] not in set(rows["model"]):
        log.warning(
            "the models were fit on embeddings of %s, these are of %s",
            bundle["embedding_model"],
            rows["model"].iloc[0],
        )
    zone_polys, id_field = study_zones(
        study, rows, level=level, zones=zones, zones_layer=zones_layer,
        id_field=id_field or bundle["id_field"], cell_size=cell_size, buffer=buffer,
        tiger_url=tiger_url, tiger_year=tiger_year,
    )  # fmt: skip
    zone_frame, features = zone_embeddings_from_blocks(
        rows, iter_vectors(study, str(rows["model"].iloc[0])), zone_polys, id_field=id_field,
        min_images=min_images,
    )  # fmt: skip
    predictions = apply_models(bundle["models"], zone_frame, features, id_field=id_field)
    predictions = predictions.assign(
        n_images=zone_frame["n_images"].to_numpy(), flagged=zone_frame["flagged"].to_numpy()
    )
    study.write_layer(f"zones_{level}", zone_frame)
    study.write_layer(f"predictions_{level}", predictions)
    return {
        "summary": {
            "zones": len(zone_frame),
            "zones_with_images": int((zone_frame["n_images"] > 0).sum()),
            "indicators": len(bundle["models"]),
            "layer": f"predictions_{level}",
        },
        "predictions": predictions,
    }


def load_models(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a model bundle written by :func:`predict_study`."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"models file {path} {not_a_file(path)}; check `apply`")
    made = "a models file written by urbanvis predict (models/predict_LEVEL.joblib)"
    if path.suffix.lower() != ".joblib":
        raise InputFileError(f"`apply` {path.name} is not a .joblib file; give {made}")
    try:
        bundle = joblib.load(path)
    except Exception as exc:  # pickle and joblib raise many kinds, in their own words
        raise InputFileError(
            f"cannot read `apply` {path.name} ({type(exc).__name__}); give {made}"
        ) from exc
    if not isinstance(bundle, dict) or "models" not in bundle:
        raise InputFileError(f"{path.name} is not an urbanvis predictor bundle; give {made}")
    return bundle


def _write_results(study, level, zones, predictions, scores, bundle) -> dict[str, str]:
    import joblib

    from ._files import atomic_file, atomic_write_text

    models_dir = study.root / "models"
    models_dir.mkdir(exist_ok=True)
    model_path = models_dir / f"predict_{level}.joblib"
    with atomic_file(model_path, "wb") as fh:
        joblib.dump(bundle, fh)
    csv_path = study.reports / f"predict_{level}.csv"
    md_path = study.reports / f"predict_{level}.md"
    study.reports.mkdir(exist_ok=True)
    atomic_write_text(csv_path, scores.to_csv(index=False))
    title = f"R² by indicator and topic ({level}, {bundle['protocol']}, seed {bundle['seed']})"
    atomic_write_text(md_path, scores_markdown(scores, title=title))
    study.write_layer(f"zones_{level}", zones)
    study.write_layer(f"predictions_{level}", predictions)
    return {
        "models": str(model_path),
        "report": str(md_path),
        "layer": f"predictions_{level}",
    }
