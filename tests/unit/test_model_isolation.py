"""A model's step isolated from the stage (analyze.recipe.isolated_model), and which registered
versions a rerun must still judge (tracking.RegisteredVersion): no Spark, no MLflow."""

import datetime as dt

from crmlake.analyze.recipe import NotTrainable, isolated_model
from crmlake.tracking import RegisteredVersion

DAY = dt.date(2026, 11, 21)


def test_a_model_that_cannot_train_is_listed_with_its_reason_and_the_stage_goes_on():
    failures: dict = {}
    with isolated_model("next_best_category", DAY, failures) as facts:
        raise NotTrainable("0 of 0 person x category pairs bought in the label window")
    assert facts == {"failed": "0 of 0 person x category pairs bought in the label window"}
    assert failures == {"next_best_category": "0 of 0 person x category pairs bought in the label window"}


def test_an_error_inside_a_models_training_is_listed_by_its_type_and_first_line():
    failures: dict = {}
    with isolated_model("segmentation", DAY, failures) as facts:
        raise ValueError("k must be below the persons\nsecond line")
    assert facts["failed"] == failures["segmentation"] == "ValueError: k must be below the persons"


def test_a_model_that_trains_adds_its_facts_and_no_failure():
    failures: dict = {}
    with isolated_model("propensity", DAY, failures) as facts:
        facts["version"] = "3"
    assert facts == {"version": "3"} and failures == {}


def test_a_version_registered_with_a_score_and_no_decision_awaits_judgement():
    assert RegisteredVersion("2", 0.71, None).awaiting_judgement
    assert not RegisteredVersion("2", 0.71, "no champion yet: version 2 becomes champion").awaiting_judgement


def test_a_version_registered_before_scores_were_recorded_is_not_judged_again():
    assert not RegisteredVersion("1", None, None).awaiting_judgement


def test_a_version_registered_before_baselines_were_served_serves_a_model():
    assert RegisteredVersion("1", 0.71, None).served == "model"
