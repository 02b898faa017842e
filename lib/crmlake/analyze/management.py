"""The monthly management report: what a CRM team asks every week, one section per question,
month to date unless a section's definition names its own period (the cohorts of the months
before; the latest acquisition month whose value windows are complete).

Every run of analyze rewrites the run date's month, from its first day to the run date (final
on the month's last day), under ``<paths.exports>/reports/monthly/``: ``<YYYY-MM>.html`` (every
section with its chart inlined, so the page can be mailed as it is), and per section
``<YYYY-MM>_<key>.csv`` (its table), ``<YYYY-MM>_<key>.png`` (its chart, which the marketers'
page shows) and, for a section that lists persons to act on, ``<YYYY-MM>_<key>_persons.csv``.
The page's copy of the sections is the summary ``management.json`` (:mod:`crmlake.summaries`).

A section (:class:`Section`) is built by one function from the gold tables (small aggregates:
only a bounded number of rows reaches the driver) and states its definition once, quoting the
``DEFINITIONS`` of the module that computes its figures. Adding a section is its builder and
one line in :data:`SECTIONS`; the shape and the builders live in
:mod:`crmlake.analyze.management_sections` (the service desk's and the campaigns') and
:mod:`crmlake.analyze.management_customers` (the customer base's). Each section is built in isolation
(:func:`crmlake.isolation.isolated`): one that fails is logged, listed in the stage's
``failed`` and on the report, and the others are still written.
"""

from __future__ import annotations

import datetime as dt
import glob
import html
import os
from decimal import Decimal
from typing import Callable

from crmlake import charts, files
from crmlake.analyze.management_customers import (
    acquisition_section, churn_risk_section, cohort_retention_section, profit_section, tier_transitions_section,
)
from crmlake.analyze.management_sections import Read, Section, campaign_roi_section, engagement_section, label, service_section
from crmlake.analyze.reports import report_page_html, write_report_csv
from crmlake.config import Conf
from crmlake.isolation import isolated
from crmlake.lake import Lake
from crmlake.log import get_logger
from crmlake.summaries import MANAGEMENT_JSON, PERSON_LIST_SUFFIX, write_summary

log = get_logger("analyze")
MONTHLY = "monthly"     # <exports>/reports/monthly/


def shown(column: str, value) -> str:
    """Return a table cell as the report and the page show it: shares and rates as percentages,
    amounts with two decimals, counts with thousands separators, nothing as a dash."""
    if value is None:
        return "–"
    if column.endswith(("_rate", "_share")):
        return f"{value:.1%}"
    if isinstance(value, (float, Decimal)):
        return f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)



# The report's sections, in its order. A new section: its builder (management_sections or management_customers) and one line here.
SECTIONS: tuple[Callable[[Read, Conf, dt.date], Section], ...] = (
    service_section,
    engagement_section,
    campaign_roi_section,
    cohort_retention_section,
    churn_risk_section,
    tier_transitions_section,
    profit_section,
    acquisition_section,
)


def _numeric(section: Section) -> list[bool]:
    return [any(isinstance(r[i], (int, float, Decimal)) and not isinstance(r[i], bool) for r in section.rows) for i in range(len(section.header))]


def file_names(month: str, section: Section) -> dict:
    """Return the names of ``section``'s files in the month's folder: csv, png and (when it lists persons) persons."""
    names = {"csv": f"{month}_{section.key}.csv", "png": f"{month}_{section.key}.png"}
    return {**names, "persons": f"{month}_{section.key}{PERSON_LIST_SUFFIX}"} if section.persons is not None else names


def _section_html(section: Section, names: dict, chart_src: str) -> str:
    esc = html.escape
    numeric = _numeric(section)
    head = "".join(f"<th class='{'num' if n else ''}'>{esc(label(c))}</th>" for c, n in zip(section.header, numeric))
    body = "".join(
        "<tr>" + "".join(f"<td class='{'num' if n else ''}'>{esc(shown(c, v))}</td>" for c, v, n in zip(section.header, row, numeric)) + "</tr>"
        for row in section.rows
    ) or f"<tr><td colspan='{len(section.header)}'>Nothing this month yet.</td></tr>"
    links = " ".join(f"<a class='csv' href='{esc(names[k])}'>{esc(names[k])}</a>" for k in ("csv", "persons") if k in names)
    return (
        f"<section id='{esc(section.key)}' class='management'><h2>{esc(section.title)}</h2><p class='headline'><b>{esc(section.headline)}</b></p>"
        f"<p class='definition'>{esc(section.definition)}</p><img alt='{esc(section.title)} chart' src='{chart_src}'>"
        f"<table><tr>{head}</tr>{body}</table><p><small>As CSV: {links}</small></p></section>"
    )


def _write_persons(folder: str, name: str, section: Section) -> str:
    """Write ``section``'s persons as the CSV ``name`` in ``folder``, and remove its lists of other months."""
    path = write_report_csv(os.path.join(folder, name), list(section.persons_header), [list(r) for r in section.persons])
    # Only the latest list of persons is kept (a call list is for now); an erasure amends it
    # (crmlake.exports.amend_person_lists), so it holds no one erased since.
    for older in glob.glob(os.path.join(folder, "*" + name[name.index("_"):])):
        if os.path.basename(older) != name:
            os.remove(older)
    return path


def write_management_report(sections: list[Section], run_date: dt.date, folder: str, failed: dict | None = None) -> list[str]:
    """Write the monthly management report of ``run_date``'s month (month to date) into ``folder``:
    ``<YYYY-MM>.html`` with every section and its chart inline, each section's CSV and PNG and,
    when it lists persons, their CSV; ``failed`` (section -> why) is said on the page. Return
    the files written, the page first."""
    files.make_folder(folder)
    month = f"{run_date:%Y-%m}"
    written, parts = [], []
    for section in sections:
        names = file_names(month, section)
        written.append(write_report_csv(os.path.join(folder, names["csv"]), list(section.header), [list(r) for r in section.rows]))
        written.append(files.write_bytes(os.path.join(folder, names["png"]), section.chart))
        if section.persons is not None:
            written.append(_write_persons(folder, names["persons"], section))
        parts.append(_section_html(section, names, charts.png_data_uri(section.chart)))
    missing = "".join(f"<li>{html.escape(name)}: {html.escape(reason)}</li>" for name, reason in (failed or {}).items())
    nav = " · ".join(f"<a href='#{html.escape(s.key)}'>{html.escape(s.title)}</a>" for s in sections)
    body = (
        f"<p class='definition'>Month to date: the figures cover {run_date.replace(day=1)} to {run_date} unless a section's definition names "
        "another period. This page is rewritten by every run of the month and final on its last day.</p>"
        f"<nav>{nav}</nav>" + "".join(parts)
        + (f"<h2>Not available today</h2><ul class='failed'>{missing}</ul>" if missing else "")
    )
    page = files.write_text(os.path.join(folder, f"{month}.html"), report_page_html(f"Management report, {month} (month to date, as of {run_date})", body))
    return [page, *written]


def page_summary(sections: list[Section], run_date: dt.date, failed: dict) -> dict:
    """Return the marketers' page's copy of the report (the summary ``management.json``): month,
    as_of, report (its page, under the reports folder), failed, and per section key, title,
    definition, headline, header (headings), numeric (per column), rows (cells as shown), chart
    and csv (file names under the report's folder)."""
    month = f"{run_date:%Y-%m}"
    return {
        "month": month, "as_of": run_date.isoformat(), "report": f"{MONTHLY}/{month}.html", "failed": failed,
        "sections": [
            {"key": s.key, "title": s.title, "definition": s.definition, "headline": s.headline, "header": [label(c) for c in s.header],
             "numeric": _numeric(s), "rows": [[shown(c, v) for c, v in zip(s.header, r)] for r in s.rows],
             "chart": file_names(month, s)["png"], "csv": [n for k, n in file_names(month, s).items() if k != "png"]}
            for s in sections
        ],
    }


def write_monthly_report(lake: Lake, conf: Conf, run_date: dt.date, report_dir: str, failures: dict) -> dict:
    """Build every section of :data:`SECTIONS` from the lake for ``run_date``, each isolated,
    write the report (:func:`write_management_report`, under ``report_dir``/monthly) and the page's summary; return the
    sections written and the files. A section or the writing that fails is listed in
    ``failures`` (the stage's ``failed``) and never stops the stage."""
    sections, failed = [], {}
    for build in SECTIONS:
        with isolated(f"monthly_report.{build.__name__}", failed, log, f"monthly report {build.__name__} for {run_date}"):
            sections.append(build(lake.read, conf, run_date))
    facts: dict = {"sections": [s.key for s in sections]}
    with isolated("monthly_report", failed, log, f"monthly report for {run_date}") as f:
        f["page"] = write_management_report(sections, run_date, os.path.join(report_dir, MONTHLY), failed)[0]
        write_summary(conf.exports_root, MANAGEMENT_JSON, page_summary(sections, run_date, failed))
        facts["page"] = f["page"]
    failures.update(failed)
    return {**facts, **({"failed": failed} if failed else {})}
