"""Spark MLlib models: purchase propensity (logistic regression) and behavioural segments (KMeans).

Feature engineering is a pipeline stage, so the exact steps used at training run again at
scoring time and travel with the model into MLflow.
"""

from __future__ import annotations

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.clustering import KMeans
from pyspark.ml.evaluation import BinaryClassificationEvaluator, ClusteringEvaluator
from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake.analyze.features import FEATURE_COLUMNS

SEGMENT_FEATURES = ("recency_days", "frequency", "monetary", "sessions_30d", "active_days_30d")


def propensity_pipeline(max_iter: int = 50) -> Pipeline:
    """Return the untrained propensity pipeline: assemble, standardise, logistic regression on ``label``."""
    return Pipeline(
        stages=[
            VectorAssembler(inputCols=list(FEATURE_COLUMNS), outputCol="raw_features", handleInvalid="keep"),
            StandardScaler(inputCol="raw_features", outputCol="features", withMean=True, withStd=True),
            LogisticRegression(featuresCol="features", labelCol="label", maxIter=max_iter, regParam=0.01),
        ]
    )


def with_propensity_score(model: PipelineModel, behaviour: DataFrame) -> DataFrame:
    """Score ``behaviour`` with a fitted propensity model; add ``propensity_score`` (P(purchase))."""
    scored = model.transform(behaviour)
    return scored.select(*behaviour.columns, vector_to_array("probability")[1].alias("propensity_score"))


def area_under_roc(model: PipelineModel, labelled: DataFrame) -> float:
    """Return the model's ROC AUC on ``labelled`` (which holds ``label``)."""
    evaluator = BinaryClassificationEvaluator(labelCol="label", rawPredictionCol="rawPrediction", metricName="areaUnderROC")
    return float(evaluator.evaluate(model.transform(labelled)))


def segmentation_pipeline(k: int, seed: int) -> Pipeline:
    """Return the untrained segmentation pipeline: log-scaled behaviour, standardised, KMeans(k)."""
    return Pipeline(
        stages=[
            VectorAssembler(inputCols=[f"log_{c}" for c in SEGMENT_FEATURES], outputCol="raw_features"),
            StandardScaler(inputCol="raw_features", outputCol="features", withMean=True, withStd=True),
            KMeans(featuresCol="features", predictionCol="segment", k=k, seed=seed),
        ]
    )


def with_log_features(behaviour: DataFrame) -> DataFrame:
    """Add ``log_<feature>`` = log1p(feature) for the segment features (heavy tails tamed)."""
    for c in SEGMENT_FEATURES:
        behaviour = behaviour.withColumn(f"log_{c}", F.log1p(F.col(c).cast("double")))
    return behaviour


def silhouette(model: PipelineModel, frame: DataFrame) -> float:
    """Return the silhouette of a fitted segmentation on ``frame``."""
    return float(ClusteringEvaluator(featuresCol="features", predictionCol="segment").evaluate(model.transform(frame)))
