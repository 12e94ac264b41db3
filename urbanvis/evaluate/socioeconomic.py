"""Socioeconomic indicators: R² of several encoders side by side (the paper's Table 2).

The predict stage's method (:func:`urbanvis.predict.predict_indicators`: mean embedding per
zone, ``StandardScaler -> PCA(0.99) -> LassoCV(cv=5)`` fit on training zones only) run once
per embedding model of a study, on the same zones and the same folds, with nothing written
but the table. The encoders are the study's embedding models (``urbanvis embed`` makes
them); this evaluation reads the vector store and embeds nothing.

Same zones: a zone counts only where every model has images in it (and at least
``min_images``); the others are flagged for all models. When the models embedded the same
captures, as ``urbanvis embed`` does, this changes nothing and each model's column equals
what ``urbanvis predict --model ID`` reports with the same ``protocol`` and ``seed``. Same
folds: the folds of :func:`~urbanvis.predict.predict_indicators` are drawn from the
labelled usable zones and the seed alone, so they are shared.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .._errors import InputError, Stopped

log = logging.getLogger(__name__)

MEAN_ROW = "(mean)"
OVERALL = "Overall"


def socioeconomic_table(
    study,
    *,
    indicators: str | os.PathLike[str],
    models: Sequence[str] = (),
    level: str = "blockgroup",
    zones: str | os.PathLike[str] | None = None,
    zones_layer: str | None = None,
    id_field: str = "GEOID",
    columns: Sequence[str] | None = None,
    topics: str | os.PathLike[str] | Mapping[str, Sequence[str]] | None = None,
    protocol: str = "kfold5",
    seed: int = 0,
    min_images: int = 1,
    cell_size: float = 500.0,
    buffer: float = 100.0,
    tiger_url: str | None = None,
    tiger_year: int = 2023,
    census_url: str | None = None,
    acs_year: int = 2022,
    progress: Callable[[int, int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """R² per indicator and topic (rows) for each embedding model (columns).

    Parameters are those of :func:`urbanvis.predict.predict_study`; ``models`` are
    embedding model ids of the study (default: all of them, see
    :func:`urbanvis.vectors.embedding_models`).

    Returns
    -------
    dict
        ``table``: columns ``topic``, ``indicator`` (``(mean)`` on a topic's mean row,
        ``Overall`` row last: the mean over all indicators), then one R² column per model;
        ``scores``: model -> the scores frame of ``predict_indicators``; ``summary``.
    """
    from ..indicators import (
        csv_indicators_first,
        indicators_for_zones,
        join_indicators,
        resolve_topics,
    )
    from ..predict import PROTOCOLS, predict_indicators, study_zones
    from ..vectors import embedding_models, read_embeddings
    from ..zones import zone_embeddings

    if protocol not in PROTOCOLS:
        raise InputError(f"unknown `protocol` {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    available = embedding_models(study)
    if not available:
        raise InputError(
            f"study {study.root} has no embeddings; run 'urbanvis embed' once per encoder first"
        )
    chosen = list(dict.fromkeys(models)) if models else available
    unknown = [m for m in chosen if m not in available]
    if unknown:
        raise InputError(
            f"`models` {unknown[0]} has no embeddings in {study.root}; give one of "
            f"{', '.join(available)}, or embed it with 'urbanvis embed'"
        )
    csv_table = csv_indicators_first(
        indicators, id_field, level=level, zones=zones, columns=columns
    )
    topic_map = resolve_topics(topics, indicators)
    embedded = {m: read_embeddings(study, model=m) for m in chosen}
    first_rows = embedded[chosen[0]][0]
    zone_polys, id_field = study_zones(
        study, first_rows, level=level, zones=zones, zones_layer=zones_layer, id_field=id_field,
        cell_size=cell_size, buffer=buffer, tiger_url=tiger_url, tiger_year=tiger_year,
    )  # fmt: skip
    if csv_table is not None:
        table = csv_table
    else:
        table = indicators_for_zones(
            indicators, zone_polys, id_field, level=level, columns=columns, acs_year=acs_year,
            census_url=census_url,
        )  # fmt: skip
    names = [c for c in table.columns if c != id_field]
    frames, features = {}, {}
    for m in chosen:
        rows, vectors = embedded[m]
        frames[m], features[m] = zone_embeddings(
            rows, vectors, zone_polys, id_field=id_field, min_images=min_images
        )
    # the same zones for every model: usable only where each model has enough images
    usable = np.logical_and.reduce(
        [
            np.isfinite(features[m]).all(axis=1) & ~frames[m]["flagged"].to_numpy(bool)
            for m in chosen
        ]  # fmt: skip
    )
    scores: dict[str, pd.DataFrame] = {}
    summary: dict[str, Any] = {}
    for k, m in enumerate(chosen):
        if should_stop is not None and should_stop():
            raise Stopped(f"stopped before model {m!r}")
        if progress is not None:
            progress(k, len(chosen), {})
        frame = frames[m].assign(flagged=frames[m]["flagged"].to_numpy(bool) | ~usable)
        joined, matches = join_indicators(frame, table, id_field=id_field)
        result = predict_indicators(
            joined, features[m], names, id_field=id_field, protocol=protocol,  # type: ignore[arg-type]
            seed=seed, topics=topic_map,
        )  # fmt: skip
        scores[m] = result.scores
        summary = {"zones": len(joined), "zones_used": int(usable.sum()), **matches}
    if progress is not None:
        progress(len(chosen), len(chosen), {})
    base = scores[chosen[0]]
    out = pd.DataFrame(
        {
            "topic": base["topic"].to_numpy(),
            "indicator": np.where(base["indicator"] == "", MEAN_ROW, base["indicator"]),
        }
    )
    for m in chosen:
        out[m] = scores[m]["r2"].to_numpy(float)
    is_indicator = (base["indicator"] != "").to_numpy()
    overall: dict[str, Any] = {"topic": OVERALL, "indicator": MEAN_ROW}
    overall.update({m: float(np.nanmean(out.loc[is_indicator, m])) for m in chosen})
    out = pd.concat([out, pd.DataFrame([overall])], ignore_index=True)
    summary.update({"models": len(chosen), "indicators": len(names)})
    log.info("R² of %d indicators for %d models on %d zones", len(names), len(chosen),
             summary["zones_used"])  # fmt: skip
    return {"table": out, "scores": scores, "summary": summary}
