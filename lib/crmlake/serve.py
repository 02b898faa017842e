"""``crmlake serve``: the one read-only page marketers and managers open every morning.

Sections, each read from files under ``paths.exports`` (no Spark at request time):

* audiences: every published audience export by date, with its counts at each
  contact-policy step, its definition, its score histogram and download links (the neutral
  files and the ad platform's upload file);
* campaign results: per audience and contact date, contacted vs control conversion, lift
  with its 95% interval, revenue per contact and whether the window is complete, as a
  table and a chart (:mod:`crmlake.summaries`, written by decide);
* segments and value tiers with their counts and revenue share (written by analyze);
* the monthly management report's sections, each with its definition, chart, table and CSV,
  linking the report (written by analyze: :mod:`crmlake.analyze.management`);
* links to every report page and its CSV.

Only published exports are visible (not the hidden version folders their links name, nor
those of exports in progress), only files an export's manifest can name, the summaries and
the report pages can be fetched, and nothing outside the exports root can be reached. Bound
to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import html
import json
import os
import re
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from crmlake import files
from crmlake.exports import CHART, DATA_FILES, MANIFEST, PLATFORM_FILES
from crmlake.log import get_logger
from crmlake.summaries import (
    CAMPAIGN_RESULTS_JSON, CAMPAIGN_RESULTS_PNG, IDENTITY_JSON, JOB_RUNS_JSON, MANAGEMENT_JSON, REPORTS_DIR, SEGMENTS_JSON, SUMMARY_DIR, SUMMARY_FILES,
    VALUE_TIERS_JSON, read_summary,
)

log = get_logger("serve")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
CONTENT_TYPES = {
    ".gz": "application/gzip", ".parquet": "application/vnd.apache.parquet", ".png": "image/png", ".json": "application/json",
    ".csv": "text/csv; charset=utf-8", ".html": "text/html; charset=utf-8",
}
REPORT_EXTENSIONS = (".html", ".csv", ".png")
SHOWN_INLINE = (".png", ".html")   # everything else downloads as an attachment


def published_exports(exports_root: str) -> list[dict]:
    """Return the manifests of every published export, newest date first, each with its ``folder``."""
    found = []
    audiences = files.list_folder(exports_root) if files.is_dir(exports_root) else []
    for audience in (a for a in audiences if NAME.match(a.name) and a.is_dir):
        for day in files.list_folder(audience.location):
            manifest = files.join(day.location, MANIFEST)
            if NAME.match(day.name) and files.info(manifest) is not None:
                found.append({**json.loads(files.read_text(manifest)), "folder": f"{audience.name}/{day.name}"})
    return sorted(found, key=lambda m: (m["date"], m["audience"]), reverse=True)


def report_pages(exports_root: str) -> list[dict]:
    """Return every report page under ``<exports>/reports/<kind>/``: kind, name, url and the
    urls of the CSV files beside it that share its name; newest first within a kind."""
    root = files.join(exports_root, REPORTS_DIR)
    pages = []
    for kind in (k.name for k in (files.list_folder(root) if files.is_dir(root) else []) if NAME.match(k.name) and k.is_dir):
        names = [f.name for f in files.list_folder(files.join(root, kind)) if NAME.match(f.name)]
        for page in sorted((f for f in names if f.endswith(".html")), reverse=True):
            stem = page[: -len(".html")]
            csvs = [f for f in names if f.endswith(".csv") and (f == f"{stem}.csv" or f.startswith(f"{stem}_"))]
            pages.append({"kind": kind, "name": stem, "url": f"/{REPORTS_DIR}/{kind}/{page}", "csv": [f"/{REPORTS_DIR}/{kind}/{c}" for c in csvs]})
    return pages


def _counts_text(counts: dict) -> str:
    suppressed = counts.get("suppressed", {})
    parts = [f"matched {counts.get('matched', 0):,}", f"no consent {counts.get('no_consent', 0):,}"]
    parts += [f"{reason.replace('_', ' ')} {n:,}" for reason, n in suppressed.items() if n]
    parts += [f"held out elsewhere {counts.get('held_out_elsewhere', 0):,}"]
    parts += [f"capped {counts.get('capped', 0):,}", f"over limit {counts.get('over_limit', 0):,}", f"control {counts.get('control', 0):,}"]
    return " · ".join(parts)


def _audiences_section(exports: list[dict]) -> str:
    esc = html.escape
    rows = []
    for m in exports:
        definition = m.get("definition", {})
        links = " ".join(f'<a class="download" href="/files/{esc(m["folder"])}/{esc(name)}" download>{esc(name)}</a>' for name in m.get("files", {}))
        platform = f'<br><small>upload format: {esc(m["platform_format"])}</small>' if m.get("platform_format") else ""
        rows.append(
            f'<tr class="export" data-audience="{esc(m["audience"])}"><td>{esc(m["date"])}</td>'
            f'<td><b>{esc(m["audience"])}</b><br><small>{esc(definition.get("description", ""))}</small></td>'
            f'<td>{esc(definition.get("channel", ""))}{platform}</td><td class="exported num">{m["row_count"]:,}</td>'
            f'<td><small>{esc(_counts_text(m.get("counts", {})))}</small><br><code>{esc(definition.get("rule", ""))}</code></td>'
            f'<td><img alt="score histogram" src="/files/{esc(m["folder"])}/{CHART}" width="300"></td><td>{links}</td></tr>'
        )
    body = "\n".join(rows) or '<tr><td colspan="7">No audience has been exported yet.</td></tr>'
    return (
        '<section id="audiences"><h2>Audiences</h2>'
        "<p>Exported persons are keyed by person id and SHA-256 of email and phone; control groups are held out to measure lift.</p>"
        "<table><thead><tr><th>Date</th><th>Audience</th><th>Channel</th><th>Exported</th><th>Contact policy</th><th>Scores</th><th>Download</th></tr></thead>"
        f"<tbody>{body}</tbody></table></section>"
    )


def _percent(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}%}"


def _money(value) -> str:
    return "–" if value is None else f"{value:,.2f}"


def _campaigns_section(results: dict | None) -> str:
    if not results or not results.get("rows"):
        return '<section id="campaigns"><h2>Campaign results</h2><p>No campaign has been measured yet.</p></section>'
    esc = html.escape
    rows = "".join(
        f'<tr class="result" data-audience="{esc(r["audience"])}" data-contact-date="{esc(str(r["contact_date"]))}">'
        f'<td>{esc(r["audience"])}</td><td>{esc(str(r["contact_date"]))}</td>'
        f'<td class="num">{r["contacted"]:,}</td><td class="num">{_percent(r["conversion_contacted"])}</td>'
        f'<td class="num">{r["control"]:,}</td><td class="num">{_percent(r["conversion_control"])}</td>'
        f'<td class="num lift">{_percent(r["lift"])}</td><td class="num">{_percent(r["lift_ci_low"])} to {_percent(r["lift_ci_high"])}</td>'
        f'<td class="num">{_money(r["revenue_per_contact"])}</td><td class="num">{_money(r["revenue_per_control"])}</td><td class="num roi">{_percent(r.get("roi"), 0)}</td>'
        f'<td>{"complete" if r["window_complete"] else "still open"}</td></tr>'
        for r in results["rows"]
    )
    return (
        '<section id="campaigns"><h2>Campaign results</h2>'
        f"<p>A contacted or control person converts with a completed order in the {results['attribution_days']} days after the contact date; "
        "lift is the contacted conversion minus the control conversion, with its 95% interval; ROI is the incremental revenue "
        "less the contacts' cost, per unit of cost. A window still open may yet change.</p>"
        f'<img alt="campaign lift" src="/{SUMMARY_DIR}/{CAMPAIGN_RESULTS_PNG}" width="700">'
        "<table><thead><tr><th>Audience</th><th>Contact date</th><th>Contacted</th><th>Conversion</th><th>Control</th><th>Conversion</th>"
        "<th>Lift</th><th>95% interval</th><th>Revenue per contact</th><th>Revenue per control</th><th>ROI</th><th>Window</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></section>"
    )


def _profiles_section(segments: dict | None, tiers: dict | None) -> str:
    def table(summary: dict | None, group: str, title: str) -> str:
        if not summary:
            return f"<h3>{title}</h3><p>Not scored yet.</p>"
        rows = "".join(
            f'<tr class="{group}" data-name="{html.escape(str(r[group]))}"><td>{html.escape(str(r[group]).replace("_", " "))}</td>'
            f'<td class="num">{r["persons"]:,}</td><td class="num">{r["buyers"]:,}</td><td class="num">{_money(r["revenue"])}</td>'
            f'<td class="num share">{_percent(r["revenue_share"])}</td><td class="num">{_money(r["current_value"])}</td>'
            f'<td class="num">{"–" if r["mean_recency_days"] is None else r["mean_recency_days"]}</td><td class="num">{_percent(r["mean_propensity"])}</td></tr>'
            for r in summary["rows"]
        )
        return (
            f"<h3>{title} <small>(scores of {html.escape(summary['score_date'])})</small></h3>"
            "<table><thead><tr><th></th><th>Persons</th><th>Buyers</th><th>Revenue to date</th><th>Revenue share</th>"
            f"<th>Revenue, last horizon</th><th>Days since last purchase</th><th>Mean propensity</th></tr></thead><tbody>{rows}</tbody></table>"
        )

    return f'<section id="segments"><h2>Segments and value tiers</h2>{table(segments, "segment", "Segments")}{table(tiers, "value_tier", "Value tiers")}</section>'


def _management_sections(report: dict | None) -> tuple[str, str]:
    """Return (nav links, sections) of the monthly management report's summary (written by
    analyze: each section with its definition, headline, chart, table and CSV), each section
    linking the report. Every section the summary holds is shown: a new one needs no code here."""
    esc = html.escape
    if not report:
        return '<a href="#monthly">Management report</a>', '<section id="monthly"><h2>Management report</h2><p>Analyze has not written it yet.</p></section>'
    folder = f"/{REPORTS_DIR}/{os.path.dirname(report['report'])}"
    link = (f'<a class="monthly-report" href="/{REPORTS_DIR}/{esc(report["report"])}">Management report {esc(report["month"])}</a> '
            f"(month to date, as of {esc(report['as_of'])})")
    nav, sections = [], []
    for s in report["sections"]:
        head = "".join(f'<th class="{"num" if n else ""}">{esc(h)}</th>' for h, n in zip(s["header"], s["numeric"]))
        rows = "".join(
            "<tr>" + "".join(f'<td class="{"num" if n else ""}">{esc(cell)}</td>' for cell, n in zip(row, s["numeric"])) + "</tr>" for row in s["rows"]
        ) or f'<tr><td colspan="{len(s["header"])}">Nothing this month yet.</td></tr>'
        downloads = " ".join(f'<a class="csv" href="{esc(folder)}/{esc(name)}">{esc(name)}</a>' for name in s["csv"])
        nav.append(f'<a href="#monthly-{esc(s["key"])}">{esc(s["title"])}</a>')
        sections.append(
            f'<section id="monthly-{esc(s["key"])}" class="management" data-key="{esc(s["key"])}"><h2>{esc(s["title"])}</h2>'
            f'<p class="headline"><b>{esc(s["headline"])}</b></p><p class="definition"><small>{esc(s["definition"])}</small></p>'
            f'<img alt="{esc(s["title"])} chart" src="{esc(folder)}/{esc(s["chart"])}" width="600">'
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table><p>{link} · as CSV: {downloads}</p></section>"
        )
    failed = "".join(f"<li>{esc(name)}: {esc(reason)}</li>" for name, reason in report["failed"].items())
    if failed:
        sections.append(f'<section id="monthly-failed"><h2>Not in this month\'s report today</h2><ul>{failed}</ul></section>')
    return "".join(nav), "".join(sections)


def _reports_section(pages: list[dict]) -> str:
    if not pages:
        return '<section id="reports"><h2>Reports</h2><p>No report has been written yet.</p></section>'
    items = "".join(
        f'<li class="report"><a href="{html.escape(p["url"])}">{html.escape(p["kind"].replace("_", " "))} {html.escape(p["name"])}</a> '
        + " ".join(f'<a class="csv" href="{html.escape(c)}">{html.escape(os.path.basename(c))}</a>' for c in p["csv"])
        + "</li>"
        for p in pages
    )
    return f'<section id="reports"><h2>Reports</h2><ul>{items}</ul></section>'


def _runs_section(runs: dict | None) -> str:
    esc = html.escape
    jobs = (runs or {}).get("jobs", {})
    rows = "".join(
        f'<tr class="run {esc(r["outcome"])}"><td>{esc(job)}</td><td>{esc(str(r["run_date"]))}</td><td>{esc(r["outcome"])}</td>'
        f'<td>{esc(r["reason"] or "")}</td><td>{esc(r["ended_at"])}</td></tr>'
        for job, r in sorted(jobs.items())
    ) or '<tr><td colspan="5">No stage has run yet.</td></tr>'
    return (
        '<section id="runs"><h2>Runs</h2><p>Each stage\'s latest run. A <b>partial</b> run did everything but the pieces named, '
        "which the next run tries again; a <b>failed</b> one changed nothing.</p>"
        f"<table><thead><tr><th>Stage</th><th>Date</th><th>Outcome</th><th>Not done</th><th>Ended (UTC)</th></tr></thead><tbody>{rows}</tbody></table></section>"
    )


# What two accounts shared that made them worth comparing (silver.identity_pairs.compared_for).
SHARED_KINDS = {"email_sha256": "an email", "phone_sha256": "a phone", "anonymous_id": "a computer (cookie)",
                "name_birth_year": "a name and birth year", "email_letters": "an email's letters (a typo?)"}
DECISIONS = (("linked", "Linked: one person"), ("name disagrees", "Kept apart: names disagree"), ("too little evidence", "Kept apart: too little evidence"))


def _identity_section(identity: dict | None) -> str:
    esc = html.escape
    if not identity:
        return '<section id="identity"><h2>Persons</h2><p>Organize has not run yet.</p></section>'
    table: dict = {}
    for row in identity["pairs"]:
        shared = " and ".join(SHARED_KINDS.get(kind, kind) for kind in (row["compared_for"] or "").split(",") if kind) or "nothing"
        table.setdefault(shared, {})[row["decision"]] = table.get(shared, {}).get(row["decision"], 0) + row["pairs"]
    rows = "".join(
        f'<tr class="pairs"><td>{esc(shared)}</td>' + "".join(f'<td class="num" data-decision="{esc(d)}">{counts.get(d, 0):,}</td>' for d, _ in DECISIONS) + "</tr>"
        for shared, counts in sorted(table.items())
    ) or f'<tr><td colspan="{len(DECISIONS) + 1}">No two accounts share anything.</td></tr>'
    quality = identity.get("quality")
    measured = ""
    if quality:
        causes = "".join(
            f'<tr><td>{esc(cause.replace("_", " "))}</td><td class="num">{figures["pairs"]:,}</td>'
            f'<td class="num">{figures.get("missed", figures.get("wrongly_merged", 0)):,}</td><td>{"missed" if "missed" in figures else "wrongly merged"}</td></tr>'
            for cause, figures in quality["by_cause"].items()
        )
        measured = (
            f'<h3>Against the labelled sample</h3><p>Pairwise precision <b>{quality["precision"]:.3f}</b>, recall <b>{quality["recall"]:.3f}</b>, '
            f'F1 {quality["f1"]:.3f}; the largest person holds {quality["largest_person_accounts"]} accounts.</p>'
            f"<table><thead><tr><th>Planted cause</th><th>Pairs</th><th>Wrong</th><th></th></tr></thead><tbody>{causes}</tbody></table>"
        )
    return (
        f'<section id="identity"><h2>Persons</h2><p>{identity["persons"]:,} persons on {esc(identity["run_date"])}. '
        "Accounts sharing something are compared field by field; a shared computer, mailbox or phone alone never makes one person.</p>"
        f'<table><thead><tr><th>Accounts that share</th>{"".join(f"<th>{esc(label)}</th>" for _, label in DECISIONS)}</tr></thead>'
        f"<tbody>{rows}</tbody></table>{measured}</section>"
    )


def catalog_page(exports_root: str) -> str:
    """Return the page's HTML for what is under ``exports_root`` now."""
    management_nav, management = _management_sections(read_summary(exports_root, MANAGEMENT_JSON))
    sections = (
        _audiences_section(published_exports(exports_root))
        + _campaigns_section(read_summary(exports_root, CAMPAIGN_RESULTS_JSON))
        + _profiles_section(read_summary(exports_root, SEGMENTS_JSON), read_summary(exports_root, VALUE_TIERS_JSON))
        + management
        + _reports_section(report_pages(exports_root))
        + _identity_section(read_summary(exports_root, IDENTITY_JSON))
        + _runs_section(read_summary(exports_root, JOB_RUNS_JSON))
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>crmlake</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:1em}}td,th{{border-bottom:1px solid #ddd;padding:.4em;vertical-align:top;text-align:left}}
.num{{text-align:right}}nav a{{margin-right:1em}}section{{margin-bottom:2.5em}}</style>
</head><body><h1>crmlake</h1>
<nav><a href="#audiences">Audiences</a><a href="#campaigns">Campaign results</a><a href="#segments">Segments and value tiers</a>{management_nav}<a href="#reports">Reports</a><a href="#identity">Persons</a><a href="#runs">Runs</a></nav>
{sections}
</body></html>"""


def resolve_download(exports_root: str, url_path: str) -> str | None:
    """Return the file a URL names, or None unless it is one the page may serve, inside the exports root:

    * ``/files/<audience>/<date>/<name>``: a file a published export's manifest can name;
    * ``/summaries/<name>``: one of the summaries;
    * ``/reports/<kind>/<name>``: a report page, its CSV or a chart.
    """
    parts = urllib.parse.unquote(url_path).split("/")
    if parts[0] != "" or not all(NAME.match(p) for p in parts[2:]):
        return None
    if len(parts) == 5 and parts[1] == "files" and parts[4] in (*DATA_FILES, *PLATFORM_FILES, CHART, MANIFEST):
        if not os.path.isfile(os.path.join(exports_root, parts[2], parts[3], MANIFEST)):
            return None
    elif len(parts) == 3 and parts[1] == SUMMARY_DIR and parts[2] in SUMMARY_FILES:
        pass
    elif len(parts) == 4 and parts[1] == REPORTS_DIR and parts[3].endswith(REPORT_EXTENSIONS):
        pass
    else:
        return None
    requested = os.path.join(exports_root, *parts[2 if parts[1] == "files" else 1:])
    # The exports root is a local folder (crmlake.config_schema.Paths): whether the file is
    # inside it is asked of that disk, its links resolved.
    root, path = os.path.realpath(exports_root), os.path.realpath(requested)
    if os.path.commonpath([root, path]) != root or not os.path.isfile(path):
        return None
    # The path through the export's link, not the version it names now: an amendment or a
    # republish may swap the link and remove that version before the file is opened, while
    # opening through the link reads the old version or the new one.
    return requested


def make_handler(exports_root: str):
    """Return a request handler class serving the page of ``exports_root`` (GET and HEAD only)."""

    class CatalogHandler(BaseHTTPRequestHandler):
        server_version = "crmlake-serve"

        def log_message(self, fmt, *args):  # route the server's access log to crmlake's log
            log.info("%s %s", self.address_string(), fmt % args)

        def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Content-Type-Options", "nosniff")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):  # noqa: N802 (http.server's naming)
            path = urllib.parse.urlparse(self.path).path
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, catalog_page(exports_root).encode(), "text/html; charset=utf-8")
                return
            file_path = resolve_download(exports_root, path)
            if file_path is None:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
                return
            with open(file_path, "rb") as fh:
                body = fh.read()
            name = os.path.basename(file_path)
            extension = os.path.splitext(name)[1]
            disposition = {} if extension in SHOWN_INLINE else {"Content-Disposition": f'attachment; filename="{name}"'}
            self._send(HTTPStatus.OK, body, CONTENT_TYPES.get(extension, "application/octet-stream"), disposition)

        do_HEAD = do_GET

    return CatalogHandler


def serve(exports_root: str, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """Return a started-but-not-serving server of the page on ``host:port`` (call serve_forever)."""
    server = ThreadingHTTPServer((host, port), make_handler(exports_root))
    log.info("crmlake page of %s on http://%s:%d/", exports_root, host, server.server_address[1])
    return server
