"""``crmlake serve``: a read-only audience catalog for marketers.

Lists every published audience export under ``paths.exports`` by date, with its counts at
each contact-policy step, its definition, its score histogram and download links. Only
published exports are visible (the hidden staging folders of exports in progress are not),
only files an export's manifest names can be downloaded, and nothing outside the exports
root can be reached. Bound to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import html
import json
import os
import re
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from crmlake.decide.export import CHART, DATA_FILES, MANIFEST, PLATFORM_FILES
from crmlake.log import get_logger

log = get_logger("serve")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
CONTENT_TYPES = {".gz": "application/gzip", ".parquet": "application/vnd.apache.parquet", ".png": "image/png", ".json": "application/json", ".csv": "text/csv"}


def published_exports(exports_root: str) -> list[dict]:
    """Return the manifests of every published export, newest date first, each with its ``folder``."""
    found = []
    if not os.path.isdir(exports_root):
        return found
    for audience in sorted(os.listdir(exports_root)):
        audience_dir = os.path.join(exports_root, audience)
        if not NAME.match(audience) or not os.path.isdir(audience_dir):
            continue
        for day in sorted(os.listdir(audience_dir), reverse=True):
            manifest = os.path.join(audience_dir, day, MANIFEST)
            if NAME.match(day) and os.path.isfile(manifest):
                with open(manifest, encoding="utf-8") as fh:
                    found.append({**json.load(fh), "folder": f"{audience}/{day}"})
    return sorted(found, key=lambda m: (m["date"], m["audience"]), reverse=True)


def _counts_text(counts: dict) -> str:
    suppressed = counts.get("suppressed", {})
    parts = [f"matched {counts.get('matched', 0):,}", f"no consent {counts.get('no_consent', 0):,}"]
    parts += [f"{reason.replace('_', ' ')} {n:,}" for reason, n in suppressed.items() if n]
    parts += [f"capped {counts.get('capped', 0):,}", f"over limit {counts.get('over_limit', 0):,}", f"control {counts.get('control', 0):,}"]
    return " · ".join(parts)


def catalog_page(exports: list[dict]) -> str:
    """Return the catalog's HTML for the manifests in ``exports``."""
    rows = []
    for m in exports:
        esc = html.escape
        definition = m.get("definition", {})
        links = " ".join(f'<a class="download" href="/files/{esc(m["folder"])}/{esc(name)}" download>{esc(name)}</a>' for name in m.get("files", {}))
        rows.append(
            f'<tr class="export" data-audience="{esc(m["audience"])}"><td>{esc(m["date"])}</td>'
            f'<td><b>{esc(m["audience"])}</b><br><small>{esc(definition.get("description", ""))}</small></td>'
            f'<td>{esc(definition.get("channel", ""))}</td><td class="exported">{m["row_count"]:,}</td>'
            f'<td><small>{esc(_counts_text(m.get("counts", {})))}</small><br><code>{esc(definition.get("rule", ""))}</code></td>'
            f'<td><img alt="score histogram" src="/files/{esc(m["folder"])}/{CHART}" width="300"></td><td>{links}</td></tr>'
        )
    body = "\n".join(rows) or '<tr><td colspan="7">No audience has been exported yet.</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>crmlake audiences</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ddd;padding:.5em;vertical-align:top;text-align:left}}</style>
</head><body><h1>Audiences</h1>
<p>Exported persons are keyed by person id and SHA-256 of email and phone; control groups are held out to measure lift.</p>
<table><thead><tr><th>Date</th><th>Audience</th><th>Channel</th><th>Exported</th><th>Contact policy</th><th>Scores</th><th>Download</th></tr></thead>
<tbody>
{body}
</tbody></table></body></html>"""


def resolve_download(exports_root: str, url_path: str) -> str | None:
    """Return the file for ``/files/<audience>/<date>/<name>``, or None unless it is a file that
    a published export's manifest names, inside the exports root."""
    parts = urllib.parse.unquote(url_path).split("/")
    if len(parts) != 5 or parts[:2] != ["", "files"] or not all(NAME.match(p) for p in parts[2:]):
        return None
    audience, day, name = parts[2:]
    if name not in (*DATA_FILES, *PLATFORM_FILES, CHART, MANIFEST):
        return None
    root = os.path.realpath(exports_root)
    path = os.path.realpath(os.path.join(root, audience, day, name))
    if os.path.commonpath([root, path]) != root or not os.path.isfile(path):
        return None
    if not os.path.isfile(os.path.join(root, audience, day, MANIFEST)):
        return None
    return path


def make_handler(exports_root: str):
    """Return a request handler class serving the catalog of ``exports_root`` (GET and HEAD only)."""

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
                self._send(HTTPStatus.OK, catalog_page(published_exports(exports_root)).encode(), "text/html; charset=utf-8")
                return
            file_path = resolve_download(exports_root, path) if path.startswith("/files/") else None
            if file_path is None:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")
                return
            with open(file_path, "rb") as fh:
                body = fh.read()
            name = os.path.basename(file_path)
            disposition = {} if name == CHART else {"Content-Disposition": f'attachment; filename="{name}"'}
            self._send(HTTPStatus.OK, body, CONTENT_TYPES.get(os.path.splitext(name)[1], "application/octet-stream"), disposition)

        do_HEAD = do_GET

    return CatalogHandler


def serve(exports_root: str, host: str = "127.0.0.1", port: int = 8765) -> ThreadingHTTPServer:
    """Return a started-but-not-serving catalog server on ``host:port`` (call serve_forever)."""
    server = ThreadingHTTPServer((host, port), make_handler(exports_root))
    log.info("audience catalog of %s on http://%s:%d/", exports_root, host, server.server_address[1])
    return server
