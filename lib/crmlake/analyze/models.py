"""Spark MLlib models: purchase propensity (logistic regression or gradient-boosted trees),
next best category (logistic regression over person × category pairs; its popularity
baseline as a pipeline), uplift (a T-learner: one logistic regression on contacted persons,
one on control persons) and behavioural segments (KMeans, k chosen by silhouette, segments
named from their centroids).

Feature engineering is a pipeline stage (the segments' log scale included), so the exact
steps used at training run again at scoring time and travel with the model into MLflow: a
registered model takes the raw columns. How a model is trained, judged against its baseline
and served is :mod:`crmlake.analyze.recipe`'s.
"""

from __future__ import annotations

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression
from pyspark.ml.clustering import KMeans
from pyspark.ml.evaluation import BinaryClassificationEvaluator, ClusteringEvaluator
from pyspark.ml.feature import SQLTransformer, StandardScaler, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake.analyze.features import FEATURE_COLUMNS, PROPENSITY_FEATURES, with_deciles

SEGMENT_FEATURES = ("recency_days", "frequency", "monetary", "sessions_30d", "active_days_30d")


def classifier_pipeline(columns, *classifiers) -> Pipeline:
    """Return an untrained pipeline: assemble ``columns``, standardise, then the ``classifiers``
    on ``label``. Without columns, the features are one constant: the classifiers learn only
    the rate of ``label`` (a naive baseline that ranks no one above anyone)."""
    constant = [SQLTransformer(statement="SELECT *, 0.0 AS no_feature FROM __THIS__")] if not columns else []
    return Pipeline(
        stages=[
            *constant,
            VectorAssembler(inputCols=list(columns) or ["no_feature"], outputCol="raw_features", handleInvalid="keep"),
            StandardScaler(inputCol="raw_features", outputCol="features", withMean=True, withStd=True),
            *classifiers,
        ]
    )


def logistic_pipeline(columns, max_iter: int = 50) -> Pipeline:
    """Return an untrained logistic regression of ``label`` on ``columns`` (:func:`classifier_pipeline`)."""
    return classifier_pipeline(columns, LogisticRegression(featuresCol="features", labelCol="label", maxIter=max_iter, regParam=0.01))


def propensity_candidates(max_iter: int = 50, trees: int = 40, depth: int = 4, seed: int = 42) -> dict[str, Pipeline]:
    """Return the untrained propensity candidates by name: a logistic regression or
    gradient-boosted trees over PROPENSITY_FEATURES."""
    return {
        "logistic_regression": logistic_pipeline(PROPENSITY_FEATURES, max_iter),
        "gradient_boosted_trees": classifier_pipeline(
            PROPENSITY_FEATURES, GBTClassifier(featuresCol="features", labelCol="label", maxIter=trees, maxDepth=depth, seed=seed)
        ),
    }


def popularity_pipeline() -> Pipeline:
    """Return the next-best-category baseline as a pipeline: every person's categories scored by
    ``category_popularity`` (the share of buyers who bought it), the same ranking for everyone.
    Its ``probability`` is (1 - popularity, popularity), as a classifier's would be."""
    return Pipeline(stages=[
        SQLTransformer(statement="SELECT *, 1.0 - category_popularity AS category_unpopularity FROM __THIS__"),
        VectorAssembler(inputCols=["category_unpopularity", "category_popularity"], outputCol="probability"),
    ])


def with_category_score(model: PipelineModel, pairs: DataFrame) -> DataFrame:
    """Score person × category ``pairs`` with a fitted category model; add ``score`` (P(buys the category))."""
    return model.transform(pairs).select(*pairs.columns, vector_to_array("probability")[1].alias("score"))


# Instance weights of the uplift pipeline's two classifiers (1 for their own group, 0 for the other).
CONTACTED_WEIGHT, CONTROL_WEIGHT = "_contacted_weight", "_control_weight"


def uplift_pipeline(max_iter: int = 50, columns=FEATURE_COLUMNS) -> Pipeline:
    """Return the untrained uplift model: a T-learner in one pipeline over ``columns``.

    Two logistic regressions on ``label`` share the assembled, standardised features; one
    weighs only the contacted persons (``CONTACTED_WEIGHT``), the other only the control
    persons (``CONTROL_WEIGHT``): a weight of 0 leaves a row out of a classifier's fit, so
    each is fitted on its own group, as two separate models would be, and the pair travels
    as one model. Fit it on :func:`with_group_weights` rows; score with :func:`with_uplift`.
    """
    def classifier(weight: str, prefix: str) -> LogisticRegression:
        return LogisticRegression(featuresCol="features", labelCol="label", weightCol=weight, maxIter=max_iter, regParam=0.01,
                                  probabilityCol=f"{prefix}_probability", rawPredictionCol=f"{prefix}_raw", predictionCol=f"{prefix}_prediction")

    return classifier_pipeline(columns, classifier(CONTACTED_WEIGHT, "contacted"), classifier(CONTROL_WEIGHT, "control"))


def with_group_weights(contacts: DataFrame) -> DataFrame:
    """Add the uplift pipeline's instance weights from ``group`` (treatment or control)."""
    treated = (F.col("group") == "treatment").cast("double")
    return contacts.withColumn(CONTACTED_WEIGHT, treated).withColumn(CONTROL_WEIGHT, 1.0 - treated)


def with_uplift(model: PipelineModel, persons: DataFrame) -> DataFrame:
    """Score ``persons`` (FEATURE_COLUMNS) with a fitted uplift model; add ``p_contacted`` and
    ``p_control`` (P(convert) if contacted, if not) and ``uplift`` = their difference."""
    scored = model.transform(persons)
    p_contacted, p_control = vector_to_array("contacted_probability")[1], vector_to_array("control_probability")[1]
    return scored.select(*persons.columns, p_contacted.alias("p_contacted"), p_control.alias("p_control"), (p_contacted - p_control).alias("uplift"))


def with_propensity_score(model: PipelineModel, behaviour: DataFrame) -> DataFrame:
    """Score ``behaviour`` with a fitted propensity model; add ``propensity_score`` (P(purchase))."""
    scored = model.transform(behaviour)
    return scored.select(*behaviour.columns, vector_to_array("probability")[1].alias("propensity_score"))


def propensity_metrics(model: PipelineModel, labelled: DataFrame, accuracy: int) -> tuple[dict, list[dict]]:
    """Evaluate a propensity model on ``labelled`` (which holds ``label``).

    Returns (metrics, calibration): auc, pr_auc, top_decile_lift (positive rate in the top
    tenth of scores over the base rate) and brier; calibration is one row per score decile
    with its mean score and observed purchase rate. Deciles come from percentile_approx
    cut points of ``accuracy`` (:func:`~crmlake.analyze.features.with_deciles`): tied scores
    share a decile, so a decile may hold more or fewer than a tenth of the persons (a
    decile left empty by a tie block has no row) and the top decile is the highest one present.
    """
    scored = model.transform(labelled).withColumn("_score", vector_to_array("probability")[1]).cache()
    metrics = {
        name: float(BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="rawPrediction", metricName=metric).evaluate(scored))
        for name, metric in (("auc", "areaUnderROC"), ("pr_auc", "areaUnderPR"))
    }
    deciles = with_deciles(scored, "_score", "decile", accuracy)
    # Safe to collect: ten rows.
    calibration = [
        r.asDict()
        for r in deciles.groupBy("decile").agg(
            F.count(F.lit(1)).alias("persons"), F.avg("_score").alias("mean_score"), F.avg("label").alias("observed_rate")
        ).orderBy("decile").collect()
    ]
    totals = scored.agg(F.avg("label").alias("base"), F.avg(F.pow(F.col("_score") - F.col("label"), 2)).alias("brier")).first()
    top = calibration[-1]["observed_rate"] if calibration else 0.0
    metrics["top_decile_lift"] = float(top / totals["base"]) if totals["base"] else 0.0
    metrics["brier"] = float(totals["brier"] or 0.0)
    scored.unpersist()
    return metrics, calibration


def segmentation_pipeline(k: int, seed: int) -> Pipeline:
    """Return the untrained segmentation pipeline over SEGMENT_FEATURES as they are: log1p of
    each (heavy tails tamed), standardised, KMeans(k) into ``segment``."""
    logs = ", ".join(f"LOG1P(CAST({c} AS DOUBLE)) AS log_{c}" for c in SEGMENT_FEATURES)
    return Pipeline(
        stages=[
            SQLTransformer(statement=f"SELECT *, {logs} FROM __THIS__"),
            VectorAssembler(inputCols=[f"log_{c}" for c in SEGMENT_FEATURES], outputCol="raw_features"),
            StandardScaler(inputCol="raw_features", outputCol="features", withMean=True, withStd=True),
            KMeans(featuresCol="features", predictionCol="segment", k=k, seed=seed),
        ]
    )


def with_segment(model: PipelineModel, persons: DataFrame) -> DataFrame:
    """Assign ``persons`` (SEGMENT_FEATURES) to segments with a fitted segmentation; add ``segment`` (its number)."""
    return model.transform(persons).select(*persons.columns, "segment")


def named_segments(model: PipelineModel, frame: DataFrame, columns: list[str]) -> tuple[DataFrame, list[dict], dict]:
    """Assign segments with a fitted segmentation and name them from their profile.

    Takes the model, persons with SEGMENT_FEATURES and tenure_days, and the columns to keep.
    Returns (the persons with segment_id and segment name, the per-segment profile, the overall means).
    """
    assigned = model.transform(frame).select(*columns, F.col("segment").alias("segment_id"))
    measures = ("recency_days", "frequency", "monetary", "tenure_days", "sessions_30d")
    # Safe to collect: one row per segment, and one overall row.
    profile = [r.asDict() for r in assigned.groupBy("segment_id").agg(F.count(F.lit(1)).alias("persons"), *[F.avg(c).alias(c) for c in measures]).collect()]
    overall = assigned.agg(*[F.avg(c).alias(c) for c in measures]).first().asDict()
    names = name_segments([{**r, "segment": r["segment_id"]} for r in profile], overall)
    for row in profile:
        row["segment"] = names[row["segment_id"]]
    mapping = F.create_map(*[x for sid, name in names.items() for x in (F.lit(sid), F.lit(name))])
    return assigned.withColumn("segment", mapping[F.col("segment_id")]), profile, overall


def silhouette(model: PipelineModel, frame: DataFrame) -> float:
    """Return the silhouette of a fitted segmentation on ``frame``."""
    return float(ClusteringEvaluator(featuresCol="features", predictionCol="segment").evaluate(model.transform(frame)))


def name_segments(profile: list[dict], overall: dict) -> dict[int, str]:
    """Name each segment from its centroid profile relative to everyone.

    Takes per-segment means (segment, recency_days, frequency, monetary, tenure_days) and the
    overall means. First rule that fits: ``new`` (tenure under half the average),
    ``champions`` (buy 1.5x as often and more recently), ``at risk`` (buy as often, but
    lapsing), ``hibernating`` (rarely buy, lapsing), ``promising`` (recent), else
    ``needs attention``. A repeated name gets a number.
    """
    def ratio(row, c):
        return (row[c] or 0.0) / overall[c] if overall.get(c) else 1.0

    names, used = {}, {}
    for row in sorted(profile, key=lambda r: r["segment"]):
        rec, freq, tenure = ratio(row, "recency_days"), ratio(row, "frequency"), ratio(row, "tenure_days")
        if tenure < 0.5:
            name = "new"
        elif freq >= 1.5 and rec <= 0.8:
            name = "champions"
        elif freq >= 1.0 and rec > 1.2:
            name = "at risk"
        elif freq < 0.5 and rec > 1.2:
            name = "hibernating"
        elif rec <= 1.0:
            name = "promising"
        else:
            name = "needs attention"
        used[name] = used.get(name, 0) + 1
        names[row["segment"]] = name if used[name] == 1 else f"{name} {used[name]}"
    return names
