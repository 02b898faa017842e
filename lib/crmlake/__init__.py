"""crmlake: big-data CRM mining jobs on Spark, Delta and MLflow.

Four stages, each a package: ``acquire`` (landing zone -> bronze), ``organize``
(bronze -> silver), ``analyze`` (silver -> gold scores, models, reports) and ``decide``
(gold -> audiences and campaign results). Stages share only ``config``, ``session``
and ``lake``; a stage reads tables, never another stage's Python objects.
"""

__version__ = "0.1.0"
