"""The house stands in pipeline order: no stage imports another, the shared rooms import no stage,
nothing in the runtime package imports the benchmark harness (``benchmarks/``, outside it), and
each stage reads its own section of the configuration and the shared ones, as typed attributes;
and the rooms stay small (no runtime module over ``MAX_MODULE_LINES`` lines)."""

import ast
import pathlib
import re

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "lib" / "crmlake"
STAGES = ("acquire", "organize", "analyze", "decide")
RUNNERS = ("cli", "jobs", "runs")   # the only modules of the package that put the stages together
HOUSE = ("crmlake", "benchmarks")   # the top-level packages an import check looks at
MAX_MODULE_LINES = 450              # small rooms: a runtime module longer than this is split by concept
CONF_MODULES = ("config", "config_schema")   # where the configuration is defined (their docstrings name every section)
STAGE_SECTION = re.compile(r"\bconf\.(" + "|".join(STAGES) + r")\b")
# A dotted lookup with a default (the settings are the validated model's attributes); Spark's own
# session conf (spark.conf.get) is not crmlake's.
DOTTED_LOOKUP = re.compile(r"(?<!spark\.)\bconf\.(?:get|require)\(|\bsettings_from\b")


def _imported_modules(path: pathlib.Path) -> set[str]:
    """Every crmlake or benchmarks module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            names.add(f"crmlake.<relative import, level {node.level}>")   # the house imports absolutely: a relative one hides its floor
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.split(".")[0] in HOUSE}


def _stage_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def _rooms(package: pathlib.Path):
    """Yield ``(path, relative path, room)`` for every module of ``package``: its room is its
    top-level module or sub-package (``analyze`` for ``analyze/job.py``)."""
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        yield path, relative, relative.parts[0].removesuffix(".py")


def _plant(package: pathlib.Path, modules: dict[str, str]) -> None:
    """Write ``modules`` (path relative to ``package`` -> source) into ``package``, folders made."""
    for relative, source in modules.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(source)


def house_violations(package: pathlib.Path) -> list[str]:
    """Return 'file imports module' for every import that breaks the pipeline order."""
    found = []
    for path, relative, room in _rooms(package):
        for module in sorted(_imported_modules(path)):
            stage = _stage_of(module)
            if module.split(".")[0] == "benchmarks":   # not even a runner: the bench is no part of the runtime
                found.append(f"{relative} imports {module}")
            elif room in RUNNERS:
                continue
            elif "<relative import" in module or (stage is not None and stage != room):
                found.append(f"{relative} imports {module}")
    return found


def test_no_stage_imports_another_and_no_shared_module_imports_a_stage():
    assert house_violations(PACKAGE) == []


def test_the_check_finds_a_cross_stage_import(tmp_path):
    _plant(tmp_path, {
        "analyze/uplift.py": "def f():\n    from crmlake.decide.results import campaign_results\n",
        "privacy.py": "from crmlake.decide import export\n",
        "cli.py": "from crmlake.decide import job\n",
        "decide/job.py": "from ..analyze import uplift\nfrom crmlake.decide import audiences\n",
    })
    assert house_violations(tmp_path) == ["analyze/uplift.py imports crmlake.decide.results", "analyze/uplift.py imports crmlake.decide.results.campaign_results",
                                          "decide/job.py imports crmlake.<relative import, level 2>",
                                          "privacy.py imports crmlake.decide", "privacy.py imports crmlake.decide.export"]


def test_the_check_finds_the_runtime_importing_the_bench_even_in_a_runner(tmp_path):
    _plant(tmp_path, {
        "jobs.py": "def f():\n    import benchmarks.lake\n",
        "lake/rs.py": "from benchmarks.common import seconds\n",
    })
    assert house_violations(tmp_path) == ["jobs.py imports benchmarks.lake", "lake/rs.py imports benchmarks.common", "lake/rs.py imports benchmarks.common.seconds"]


def conf_violations(package: pathlib.Path) -> list[str]:
    """Return 'file reads conf.<stage>' for every read of a stage's configuration section outside
    that stage's package, and 'file looks up <call>' for every dotted lookup of a setting."""
    found = []
    for path, relative, room in _rooms(package):
        text = path.read_text(encoding="utf-8")
        found += [f"{relative} looks up {m.group(0)}" for m in DOTTED_LOOKUP.finditer(text)]
        if room not in CONF_MODULES:
            found += [f"{relative} reads conf.{stage}" for stage in sorted(set(STAGE_SECTION.findall(text))) if stage != room]
    return found


def test_a_stage_reads_its_own_section_and_the_shared_ones_as_attributes():
    assert conf_violations(PACKAGE) == []


def test_the_check_finds_a_cross_stage_read_and_a_dotted_lookup(tmp_path):
    _plant(tmp_path, {
        "decide/job.py": "region = conf.organize.identity.default_phone_region\ncap = conf.decide.policy.max_contacts\n",
        "analyze/uplift.py": "days = lake.conf.decide.attribution_days\nshare = conf.get('analyze.propensity.holdout_share', 0.25)\n",
        "privacy.py": "region = conf.require('organize.identity.default_phone_region')\nzone = spark.conf.get('spark.sql.session.timeZone')\n",
        "session.py": "rules = settings_from(Rules, section)\ntz = conf.business.timezone\n",
    })
    assert conf_violations(tmp_path) == [
        "analyze/uplift.py looks up conf.get(", "analyze/uplift.py reads conf.decide",
        "decide/job.py reads conf.organize",
        "privacy.py looks up conf.require(",
        "session.py looks up settings_from",
    ]


def test_no_runtime_module_is_over_the_line_limit():
    sizes = {str(relative): len(path.read_text(encoding="utf-8").splitlines()) for path, relative, _ in _rooms(PACKAGE)}
    assert sizes and {module: lines for module, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}
