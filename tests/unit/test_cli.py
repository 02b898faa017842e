"""The command line: misuse exits 2 with the culprit named."""

import pytest

from crmlake.cli import main


def test_missing_conf_file_exits_2_and_names_it(capsys, tmp_path):
    assert main(["run", "--conf", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_bad_date_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--date", "21/11/2026"])
    assert exit_info.value.code == 2
    assert "YYYY-MM-DD" in capsys.readouterr().err


def test_generate_refuses_to_overwrite_without_force(tmp_path, capsys):
    landing = tmp_path / "landing"
    args = ["generate", "--landing", str(landing), "--customers", "20", "--days", "3", "--end", "2026-11-21"]
    assert main(args) == 0
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert main([*args, "--skip-if-present"]) == 0


def test_erase_needs_exactly_one_of_account_or_email(capsys):
    for argv in (["erase"], ["erase", "--account", "A1", "--email", "a@x"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "--account" in capsys.readouterr().err


def test_a_run_whose_pieces_failed_exits_4_naming_each_and_still_prints_its_outputs(conf, capsys):
    from crmlake.cli import finish

    summaries = {"decide": {"exports": ["/x/likely_buyers/2026-11-21"]}}
    assert finish(conf, summaries, {}) == 0
    assert finish(conf, summaries, {"analyze 2026-11-21: next_best_category": "no pairs", "decide 2026-11-21: audience win_back": "boom"}) == 4
    out, err = capsys.readouterr()
    assert out.count("audience     : /x/likely_buyers/2026-11-21") == 2
    assert err.splitlines() == ["crmlake: not done: analyze 2026-11-21: next_best_category: no pairs", "crmlake: not done: decide 2026-11-21: audience win_back: boom"]
