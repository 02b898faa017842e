"""Configuration: the packaged defaults, an environment file, --set and env vars, validated into one object.

Lookup order, later wins: the defaults shipped in the package (``crmlake/conf/base.yaml``;
``conf/base.yaml`` in the repository is a link to it) < the file given with ``--conf`` (for
example ``conf/local.yaml``) < ``--set section.key=value`` < environment variables named
``CRMLAKE__SECTION__KEY``. The merged result is checked against
:mod:`crmlake.config_schema`: an unknown key, a missing one or a wrong type raises
:class:`ConfigError` naming the key, the file (or override) it came from and the nearest
valid key. The validated model is what every stage reads, as typed attributes
(``conf.business.timezone``, ``conf.organize.identity.link_min_probability``): a
:class:`Conf` is a :class:`~crmlake.config_schema.CrmlakeConf` with the table locations and
overrides added. Table locations come from :meth:`Conf.table` only, so a table's path is
defined in one place.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from pydantic import BaseModel, ValidationError

from crmlake.config_schema import CrmlakeConf

ENV_PREFIX = "CRMLAKE__"
PATH_KEYS = ("landing", "lake", "exports")
LAYERS = ("bronze", "silver", "gold")


class ConfigError(ValueError):
    """A configuration file, override or key is wrong; the message names it."""


DEFAULTS = "packaged defaults (crmlake/conf/base.yaml)"


def _packaged_defaults() -> dict:
    """Return the defaults shipped inside the package (works from a wheel or a --py-files zip)."""
    text = resources.files("crmlake").joinpath("conf", "base.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text) or {}


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


def _set_dotted(tree: dict, dotted: str, value: Any, origin: str) -> str:
    """Set ``dotted`` in ``tree``; return the key as the schema spells it."""
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
    return ".".join(parts)


def _parse_value(text: str) -> Any:
    """Parse an override value as YAML (so numbers, booleans and lists keep their type)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


@dataclass
class _Layer:
    """One source of settings (a file, the --set pairs, the environment) and where each key came from."""

    tree: dict = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_file(cls, tree: dict, origin: str) -> "_Layer":
        return cls(tree, {key: origin for key in _leaf_keys(tree)})

    def set(self, dotted: str, value: Any, origin: str) -> None:
        self.origins[_set_dotted(self.tree, dotted, value, origin)] = origin


def _leaf_keys(tree: Mapping, prefix: str = "") -> Iterable[str]:
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _leaf_keys(value, dotted + ".")
        else:
            yield dotted


def _override_layer(pairs: Iterable[str]) -> _Layer:
    layer = _Layer()
    for pair in pairs or ():
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        layer.set(key.strip(), _parse_value(value), f"--set {pair}")
    return layer


def _env_layer(environ: Mapping[str, str]) -> _Layer:
    layer = _Layer()
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            layer.set(name[len(ENV_PREFIX):].lower().replace("__", "."), _parse_value(value), f"environment variable {name}")
    return layer


def _schema_model(path: list[str]) -> type[BaseModel] | None:
    """Return the schema section at ``path`` (list indexes left out), or None past a leaf."""
    import typing

    def section_of(annotation) -> type[BaseModel] | None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return annotation
        return next((m for m in map(section_of, typing.get_args(annotation)) if m), None)

    model: type[BaseModel] | None = CrmlakeConf
    for part in path:
        if model is None or part not in model.model_fields:
            return None
        model = section_of(model.model_fields[part].annotation)
    return model


def _all_schema_keys(path: tuple[str, ...] = ()) -> list[str]:
    """Return every valid dotted key under the schema section at ``path``, sections included."""
    keys = []
    for name in _schema_model(list(path)).model_fields:
        keys.append(".".join((*path, name)))
        if _schema_model([*path, name]):
            keys.extend(_all_schema_keys((*path, name)))
    return keys


def _nearest_key(path: list[str]) -> str | None:
    """Return the valid key closest to the misspelt ``path``: a sibling first, then any key."""
    parent = _schema_model(path[:-1])
    if parent is not None:
        close = difflib.get_close_matches(path[-1], list(parent.model_fields), n=1, cutoff=0.6)
        if close:
            return ".".join([*path[:-1], close[0]])
    close = difflib.get_close_matches(".".join(path), _all_schema_keys(), n=1, cutoff=0.6)
    return close[0] if close else None


def _origin_of(dotted: str, origins: Mapping[str, str]) -> str:
    if dotted in origins:
        return origins[dotted]
    inside = [o for k, o in origins.items() if k.startswith(dotted + ".")]
    if inside:
        return inside[-1]
    enclosing = [o for k, o in origins.items() if dotted.startswith(k + ".")]
    return enclosing[-1] if enclosing else "no file sets it"


def _explain(error: ValidationError, origins: Mapping[str, str]) -> str:
    """Turn pydantic's errors into lines naming each key, its origin and the nearest valid key."""
    lines = []
    for problem in error.errors()[:5]:
        loc = [str(p) for p in problem["loc"] if not isinstance(p, int)]
        shown = ".".join(str(p) for p in problem["loc"])
        origin = _origin_of(".".join(loc), origins)
        if problem["type"] == "extra_forbidden":
            nearest = _nearest_key(loc)
            hint = f"; did you mean '{nearest}'?" if nearest else ""
            lines.append(f"unknown configuration key '{shown}' (from {origin}){hint}")
        elif problem["type"] == "missing":
            why = "an entry of this list needs it" if len(loc) < len(problem["loc"]) else "every key has a default in crmlake/conf/base.yaml"
            lines.append(f"configuration key '{shown}' is missing ({why}; {origin})")
        elif isinstance(problem.get("input"), (Mapping, list)):   # a whole section or list: its rule names the entry
            lines.append(f"configuration key '{shown}' (from {origin}): {problem['msg']}")
        else:
            lines.append(f"configuration key '{shown}' = {problem.get('input')!r} (from {origin}): {problem['msg']}")
    more = len(error.errors()) - len(lines)
    return "; ".join(lines) + (f"; and {more} more" if more > 0 else "")


def _is_uri(value: str) -> bool:
    return "://" in value or value.startswith("file:")


def _absolute(value: str, cwd: Path) -> str:
    if _is_uri(value):
        return value
    return str((cwd / value).resolve())


class Conf(CrmlakeConf):
    """The merged, validated configuration: read its sections as attributes
    (``conf.analyze.propensity.label_days``); tables by :meth:`table`."""

    @property
    def lake_root(self) -> str:
        return self.paths.lake

    @property
    def landing_root(self) -> str:
        return self.paths.landing

    @property
    def exports_root(self) -> str:
        return self.paths.exports

    @property
    def checkpoint_root(self) -> str:
        """Where Spark checkpoints go: ``paths.checkpoints``, else ``<lake>/_checkpoints``."""
        return self.paths.checkpoints or f"{self.lake_root.rstrip('/')}/_checkpoints"

    def table(self, name: str) -> str:
        """Return the location of table ``layer.table`` (e.g. ``bronze.orders``)."""
        layer, _, table = name.partition(".")
        if layer not in LAYERS or not table:
            raise ConfigError(f"table name {name!r}: expected <bronze|silver|gold>.<table>")
        return f"{self.lake_root.rstrip('/')}/{layer}/{table}"

    def with_overrides(self, pairs: Iterable[str]) -> "Conf":
        """Return a validated copy with ``key=value`` pairs applied over this configuration."""
        layer = _override_layer(pairs)
        return validated(_deep_merge(self.model_dump(), layer.tree), layer.origins)

    def fingerprint(self) -> str:
        """Return a short hash of the merged configuration (recorded with each run)."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


def validated(data: Mapping, origins: Mapping[str, str] | None = None) -> Conf:
    """Check ``data`` against the schema; return it as a :class:`Conf`.

    Raises :class:`ConfigError` naming each wrong key, its origin and the nearest valid key.
    """
    try:
        return Conf.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, origins or {})) from None


def load_conf(
    conf_file: str | os.PathLike | None = None,
    overrides: Iterable[str] = (),
    environ: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
) -> Conf:
    """Merge the packaged defaults, ``conf_file``, ``--set`` overrides and env vars, validate
    the result against :mod:`crmlake.config_schema` and return it as a :class:`Conf`.

    Relative ``paths.*``, ``mlflow.artifact_root`` and SQLite tracking URIs are made
    absolute against ``cwd`` (default: the current directory). Raises :class:`ConfigError`
    naming the file, key or override that is wrong.
    """
    base_dir = Path(cwd) if cwd else Path.cwd()
    layers = [_Layer.of_file(_packaged_defaults(), DEFAULTS)]
    if conf_file:
        layers.append(_Layer.of_file(_load_yaml(Path(conf_file)), str(conf_file)))
    layers += [_override_layer(overrides), _env_layer(os.environ if environ is None else environ)]
    data: dict = {}
    origins: dict[str, str] = {}
    for layer in layers:
        data = _deep_merge(data, layer.tree)
        origins.update(layer.origins)
    conf = validated(data, origins)

    paths = {key: _absolute(getattr(conf.paths, key), base_dir) for key in PATH_KEYS}
    if conf.paths.checkpoints:
        paths["checkpoints"] = _absolute(conf.paths.checkpoints, base_dir)
    mlflow_conf = {}
    uri = conf.mlflow.tracking_uri
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        mlflow_conf["tracking_uri"] = "sqlite:///" + _absolute(uri[len("sqlite:///"):], base_dir)
    if conf.mlflow.artifact_root:
        mlflow_conf["artifact_root"] = _absolute(conf.mlflow.artifact_root, base_dir)
    return conf.model_copy(update={"paths": conf.paths.model_copy(update=paths), "mlflow": conf.mlflow.model_copy(update=mlflow_conf)})
