"""Configuration: one merged view of conf/base.yaml, an environment file, --set and env vars.

Precedence, later wins: ``conf/base.yaml`` < the file given with ``--conf`` (for example
``conf/local.yaml``) < ``--set section.key=value`` < environment variables named
``CRMLAKE__SECTION__KEY``. Table locations come from :meth:`Conf.table` only, so a
table's path is defined in one place.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

ENV_PREFIX = "CRMLAKE__"
PATH_KEYS = ("landing", "lake", "exports")
LAYERS = ("bronze", "silver", "gold")


class ConfigError(ValueError):
    """A configuration file, override or key is wrong; the message names it."""


def _package_conf_dir() -> Path:
    """Return the repository's conf/ directory (where base.yaml lives)."""
    env = os.environ.get("CRMLAKE_CONF_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "conf" / "base.yaml").exists():
            return parent / "conf"
    return Path.cwd() / "conf"


def _deep_merge(base: dict, override: Mapping) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _load_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except FileNotFoundError:
        raise ConfigError(f"configuration file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def _set_dotted(tree: dict, dotted: str, value: Any, origin: str) -> None:
    parts = [p for p in dotted.split(".") if p]
    if parts[:2] == ["spark", "conf"] and len(parts) > 3:
        parts = ["spark", "conf", ".".join(parts[2:])]  # Spark's own keys contain dots
    if not parts:
        raise ConfigError(f"{origin}: empty key")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: '{part}' in '{dotted}' is a value, not a section")
        node = child
    node[parts[-1]] = value


def _parse_value(text: str) -> Any:
    """Parse an override value as YAML (so numbers, booleans and lists keep their type)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_overrides(pairs: Iterable[str]) -> dict:
    """Turn ``["a.b=1", "c=x"]`` into a nested dict; raises ConfigError naming a bad pair."""
    tree: dict = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        _set_dotted(tree, key.strip(), _parse_value(value), f"--set {pair!r}")
    return tree


def _env_overrides(environ: Mapping[str, str]) -> dict:
    tree: dict = {}
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            dotted = name[len(ENV_PREFIX):].lower().replace("__", ".")
            _set_dotted(tree, dotted, _parse_value(value), f"environment {name}")
    return tree


def _is_uri(value: str) -> bool:
    return "://" in value or value.startswith("file:")


def _absolute(value: str, cwd: Path) -> str:
    if _is_uri(value):
        return value
    return str((cwd / value).resolve())


@dataclass(frozen=True)
class Conf:
    """The merged configuration. ``data`` is the plain nested dict."""

    data: dict

    def get(self, dotted: str, default: Any = None) -> Any:
        """Return the value at ``section.key`` or ``default`` when absent."""
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return default
            node = node[part]
        return node

    def require(self, dotted: str) -> Any:
        """Return the value at ``section.key``; raise ConfigError naming the key if absent."""
        value = self.get(dotted)
        if value is None:
            raise ConfigError(f"configuration key '{dotted}' is missing")
        return value

    @property
    def lake_root(self) -> str:
        return self.require("paths.lake")

    @property
    def landing_root(self) -> str:
        return self.require("paths.landing")

    @property
    def exports_root(self) -> str:
        return self.require("paths.exports")

    def table(self, name: str) -> str:
        """Return the location of table ``layer.table`` (e.g. ``bronze.orders``)."""
        layer, _, table = name.partition(".")
        if layer not in LAYERS or not table:
            raise ConfigError(f"table name {name!r}: expected <bronze|silver|gold>.<table>")
        return f"{self.lake_root.rstrip('/')}/{layer}/{table}"

    def with_overrides(self, pairs: Iterable[str]) -> "Conf":
        """Return a copy with ``key=value`` pairs applied over this configuration."""
        return Conf(_deep_merge(self.data, parse_overrides(pairs)))

    def fingerprint(self) -> str:
        """Return a short hash of the merged configuration (recorded with each run)."""
        blob = json.dumps(self.data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def settings_from(cls, *sections: Mapping | None):
    """Build the dataclass ``cls`` from conf sections: keys it declares are taken (later
    sections win), others ignored, missing ones keep the dataclass defaults."""
    fields = cls.__dataclass_fields__
    return cls(**{k: v for section in sections for k, v in (section or {}).items() if k in fields})


def load_conf(
    conf_file: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> Conf:
    """Merge base.yaml, ``conf_file``, ``--set`` overrides and env vars into a :class:`Conf`.

    Relative ``paths.*``, ``mlflow.artifact_root`` and SQLite tracking URIs are made
    absolute against ``cwd`` (default: the current directory).
    """
    base_dir = Path(cwd) if cwd else Path.cwd()
    data = _load_yaml(_package_conf_dir() / "base.yaml")
    if conf_file:
        data = _deep_merge(data, _load_yaml(Path(conf_file)))
    data = _deep_merge(data, parse_overrides(overrides))
    data = _deep_merge(data, _env_overrides(os.environ if environ is None else environ))

    paths = data.setdefault("paths", {})
    for key in PATH_KEYS:
        if not paths.get(key):
            raise ConfigError(f"configuration key 'paths.{key}' is missing")
        paths[key] = _absolute(str(paths[key]), base_dir)
    mlflow_conf = data.setdefault("mlflow", {})
    uri = str(mlflow_conf.get("tracking_uri") or "")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        mlflow_conf["tracking_uri"] = "sqlite:///" + _absolute(uri[len("sqlite:///"):], base_dir)
    if mlflow_conf.get("artifact_root"):
        mlflow_conf["artifact_root"] = _absolute(str(mlflow_conf["artifact_root"]), base_dir)
    return Conf(data)
