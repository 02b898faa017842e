"""Pairwise quality of predicted persons against the planted identity truth; answers by hand."""

from crmlake.organize.identity_truth import pairwise_quality, read_identity_truth
from pyspark.testing import assertDataFrameEqual

TRUTH = "account_id string, person string, causes string"
PREDICTED = "account_id string, person_id string"


def test_pairs_are_scored_overall_and_per_cause(spark):
    truth = spark.createDataFrame(
        [
            ("A1", "P1", "second_account:P1;typo_email:P1;placeholder_phone:-"),
            ("A2", "P1", "second_account:P1;typo_email:P1;placeholder_phone:-"),
            ("A3", "P2", "second_account:P2;shared_device:P2"),
            ("A4", "P2", "second_account:P2;shared_device:P2"),
            ("A5", "P2", "second_account:P2"),
            ("A6", "P3", "household:H1;placeholder_email:-"),
            ("A7", "P4", "household:H1"),
            ("A8", "P5", "placeholder_email:-;placeholder_phone:-"),
            ("A9", "P6", "placeholder_email:-"),
            ("A10", "P7", ""),
        ],
        TRUTH,
    )
    predicted = spark.createDataFrame(
        [("A1", "X"), ("A2", "X"), ("A3", "Y"), ("A4", "Y"), ("A5", "Z"), ("A6", "W"), ("A7", "W"), ("A8", "V"), ("A9", "V"), ("A10", "U"),
         ("A99", "X")],  # not in the truth: ignored, so X holds two scored accounts
        PREDICTED,
    )
    quality = pairwise_quality(predicted, truth)
    # True pairs: P1 (A1,A2); P2 (A3,A4) (A3,A5) (A4,A5) = 4.
    # Predicted pairs: X (A1,A2), Y (A3,A4), W (A6,A7), V (A8,A9) = 4, of which 2 true.
    assert (quality["true_pairs"], quality["predicted_pairs"]) == (4, 4)
    assert (quality["precision"], quality["recall"], quality["f1"]) == (0.5, 0.5, 0.5)
    assert quality["largest_person_accounts"] == 2
    by_cause = quality["by_cause"]
    # One person looking like two: the person's pairs within the group, and how many were found.
    assert by_cause["second_account"] == {"pairs": 4, "merged": 2, "missed": 2, "recall": 0.5}
    assert by_cause["typo_email"] == {"pairs": 1, "merged": 1, "missed": 0, "recall": 1.0}
    assert by_cause["shared_device"] == {"pairs": 1, "merged": 1, "missed": 0, "recall": 1.0}
    # Two persons looking like one: cross-person pairs within the group, and merges within it.
    # household H1: (A6,A7) of P3 and P4, merged in W.
    assert by_cause["household"] == {"pairs": 1, "merged": 1, "wrongly_merged": 1, "precision": 0.0}
    # placeholder email on A6 (P3), A8 (P5), A9 (P6): 3 cross pairs; (A8,A9) merged in V.
    assert by_cause["placeholder_email"] == {"pairs": 3, "merged": 1, "wrongly_merged": 1, "precision": 0.0}
    # placeholder phone on A1, A2 (P1) and A8 (P5): cross pairs (A1,A8) (A2,A8); (A1,A2) merged, rightly.
    assert by_cause["placeholder_phone"] == {"pairs": 2, "merged": 1, "wrongly_merged": 0, "precision": 1.0}
    for absent in ("family_mailbox", "shop_phone", "recycled_phone"):
        assert by_cause[absent] == {"pairs": 0, "merged": 0, "wrongly_merged": 0, "precision": 1.0}


def test_an_account_the_prediction_leaves_out_is_a_person_of_its_own(spark):
    truth = spark.createDataFrame([("A1", "P1", "second_account:P1"), ("A2", "P1", "second_account:P1")], TRUTH)
    quality = pairwise_quality(spark.createDataFrame([("A1", "X")], PREDICTED), truth)
    # The one true pair is missed; no pair was predicted, so none was wrong.
    assert (quality["true_pairs"], quality["predicted_pairs"], quality["precision"], quality["recall"], quality["f1"]) == (1, 0, 1.0, 0.0, 0.0)
    assert quality["by_cause"]["second_account"] == {"pairs": 1, "merged": 0, "missed": 1, "recall": 0.0}


def test_a_placeholder_on_many_accounts_is_counted_not_enumerated(spark):
    # 1,000 accounts carry the placeholder, 100 for each of 10 persons; predicted: 5 persons of 200 accounts (two true persons each).
    rows = [(f"A{i}", f"P{i // 100}", "placeholder_email:-") for i in range(1000)]
    truth = spark.createDataFrame(rows, TRUTH)
    predicted = spark.createDataFrame([(f"A{i}", f"X{i // 200}") for i in range(1000)], PREDICTED)
    quality = pairwise_quality(predicted, truth)
    # All pairs 1000*999/2 = 499,500; within one person 10 * 100*99/2 = 49,500; across persons 450,000.
    # Merged: 5 * 200*199/2 = 99,500, of which within one person 49,500: wrongly 50,000.
    assert quality["by_cause"]["placeholder_email"] == {"pairs": 450_000, "merged": 99_500, "wrongly_merged": 50_000, "precision": 0.4975}
    assert (quality["true_pairs"], quality["predicted_pairs"], quality["largest_person_accounts"]) == (49_500, 99_500, 200)


def test_the_truth_file_reads_as_typed_columns_with_empty_causes_as_empty(spark, tmp_path):
    path = tmp_path / "identity.csv"
    path.write_text("account_id,person,causes\nA00000000,P0000000,\nA00000002,P0000001,recycled_phone:R0000001;placeholder_email:-\n")
    expected = spark.createDataFrame(
        [("A00000000", "P0000000", ""), ("A00000002", "P0000001", "recycled_phone:R0000001;placeholder_email:-")], TRUTH
    )
    assertDataFrameEqual(read_identity_truth(spark, str(path)), expected)
