"""Typed, nested run configs: sections of keys, each key's type and allowed range declared once.

Every command's config (pretraining here, fine-tuning and evaluation in :mod:`mcl_video.evaluation`)
is a :class:`Config`: a pydantic model whose fields are sections (``data``, ``model``, ``sampling``,
``optim``, ``run``, ...), each a :class:`Section` of plain keys. The same machinery loads all of them:

- a YAML file (nested by section; a flat file of the older format is read too) and ``key=value``
  overrides from the command line, merged key by key: ``sampling.motion_prob=0.5`` changes that key
  and keeps the file's other sampling keys;
- a key is written ``section.key``; a key whose name is unique across the sections may be written
  without its section (``seed=1``, ``lr=0.01``), and a few older names are mapped
  (:attr:`Config.RENAMED`, e.g. ``data`` -> ``data.annotations``);
- an unknown key, a value of the wrong type or outside its range is a :class:`ConfigError` of one line
  naming the source, the key, the value and what is allowed (with a did-you-mean for unknown keys).

:func:`config_to_dict` gives the resolved config as plain nested data (saved with every run and in every
checkpoint); :func:`flatten` gives it as ``{"section.key": value}`` (resume checks).
"""

from __future__ import annotations

import difflib
import importlib.resources
import math
from pathlib import Path
from typing import Annotated, Any, ClassVar, get_args, get_origin

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from mcl_video.errors import UsageError


class ConfigError(UsageError, ValueError):
    """A config file or override that cannot be used; the message names the source and the fix."""


# ------------------------------------------------------------------------------------ value types
def _number(value: Any) -> Any:
    """Numbers only: ``true``/``false`` is not 1/0, and a string must read as a number."""
    if isinstance(value, bool):
        raise ValueError("expected a number, not true/false")
    return value


def _whole(value: Any) -> Any:
    value = _number(value)
    if isinstance(value, str):
        try:
            as_float = float(value)
        except ValueError:
            return value  # pydantic names the type error
        if as_float.is_integer():
            return int(as_float)
    return value


Int = Annotated[int, BeforeValidator(_whole)]
PositiveInt = Annotated[int, Field(ge=1), BeforeValidator(_whole)]
NonNegativeInt = Annotated[int, Field(ge=0), BeforeValidator(_whole)]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False), BeforeValidator(_number)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False), BeforeValidator(_number)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False), BeforeValidator(_number)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False), BeforeValidator(_number)]
OpenFraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False), BeforeValidator(_number)]
Seed = Annotated[int, Field(ge=0, lt=2**32), BeforeValidator(_whole)]


class Section(BaseModel):
    """One group of keys. Unknown keys are refused; values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True,
                              coerce_numbers_to_str=True)


class Config(BaseModel):
    """A command's whole config: its fields are :class:`Section` s."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # older flat names -> their dotted key (read from old files, checkpoints and command lines)
    RENAMED: ClassVar[dict[str, str]] = {}
    # a mapping under an older flat name whose items are keys of a section (``sampling_options``)
    MERGED: ClassVar[dict[str, str]] = {}
    # names other code bases use for the same settings -> ours (only for did-you-mean hints)
    ALIASES: ClassVar[dict[str, str]] = {}
    # keys that may change on resume without changing what the run computes
    FREE_ON_RESUME: ClassVar[frozenset[str]] = frozenset()
    # keys that change the shapes of the saved weights: a resume can never change them
    FIXED_ON_RESUME: ClassVar[frozenset[str]] = frozenset()

    def check(self) -> None:
        """Rules between keys; raise :class:`ConfigError` (subclasses extend)."""

    @model_validator(mode="before")
    @classmethod
    def _by_section(cls, data: Any) -> Any:
        """``PretrainConfig(lr=0.1, seed=2)``: keys outside a section go where the file rules put them."""
        if isinstance(data, dict) and any(k not in cls.model_fields for k in data):
            nested: dict[str, dict[str, Any]] = {}
            for dotted, value in _pairs(cls, data, cls.__name__):
                sec, key = dotted.split(".", 1)
                nested.setdefault(sec, {})[key] = value
            return nested
        return data


# ------------------------------------------------------------------------------------ the key table
def sections(config_cls: type[Config]) -> dict[str, type[Section]]:
    return {name: f.annotation for name, f in config_cls.model_fields.items()}


def keys(config_cls: type[Config]) -> dict[str, tuple[str, str]]:
    """``{"section.key": (section, key)}`` of every key, in declaration order."""
    out = {}
    for sec, sec_cls in sections(config_cls).items():
        for key in sec_cls.model_fields:
            out[f"{sec}.{key}"] = (sec, key)
    return out


def _short_names(config_cls: type[Config]) -> dict[str, list[str]]:
    short: dict[str, list[str]] = {}
    for dotted, (_, key) in keys(config_cls).items():
        short.setdefault(key, []).append(dotted)
    return short


def resolve_key(config_cls: type[Config], name: str, source: str) -> str:
    """The dotted key that ``name`` (dotted, a unique short name, or an older flat name) means."""
    table = keys(config_cls)
    name = name.strip().lstrip("-").replace("-", "_")
    if name in table:
        return name
    if name in config_cls.RENAMED:
        return config_cls.RENAMED[name]
    matches = _short_names(config_cls).get(name, [])
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise ConfigError(f"{source}: key '{name}' is in several sections ({', '.join(matches)}); "
                          "write it with its section")
    names = list(table) + list(_short_names(config_cls)) + list(config_cls.RENAMED)
    hint_pool = names + list(config_cls.ALIASES)
    close = difflib.get_close_matches(name, hint_pool, n=1, cutoff=0.7)
    if close:
        guess = config_cls.ALIASES.get(close[0], close[0])
        guess = resolve_key(config_cls, guess, source) if guess not in table else guess
        hint = f"; did you mean '{guess}'?"
    else:
        hint = f"; the keys are listed by --help (sections: {', '.join(sections(config_cls))})"
    raise ConfigError(f"{source}: unknown config key '{name}'{hint}")


def _pairs(config_cls: type[Config], mapping: dict, source: str, prefix: str = "") -> list[tuple[str, Any]]:
    """``(dotted key, value)`` pairs of a (nested or flat) mapping, in order."""
    out: list[tuple[str, Any]] = []
    secs = sections(config_cls)
    for raw_key, value in mapping.items():
        name = f"{prefix}{raw_key}"
        if not prefix and name in secs and isinstance(value, dict):
            out += _pairs(config_cls, value, source, prefix=f"{name}.")
        elif not prefix and name in config_cls.MERGED and isinstance(value, dict):
            out += _pairs(config_cls, value, source, prefix=f"{config_cls.MERGED[name]}.")
        elif not prefix and name in secs and name not in config_cls.RENAMED:
            raise ConfigError(f"{source}: '{name}' is a section; give its keys ({name}.KEY=VALUE) or a "
                              f"mapping of them")
        else:
            out.append((resolve_key(config_cls, str(name), source), value))
    return out


def _parse_text(value: str, dotted: str, source: str) -> Any:
    """A command-line value as YAML (``0.5``, ``true``, ``[0.2, 1.0]``, ``{a: 1}``); empty stays ''."""
    if not value.strip():
        return ""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as err:
        first = " ".join(str(err).split())
        raise ConfigError(f"{source}: cannot read {dotted}={value!r} ({first})") from None


def _allowed(error: dict) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}".replace("'", "")
    if kind == "finite_number":
        return "must be a finite number"
    bounds = [f"{word} {ctx[k]}" for k, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
              if k in ctx]
    if bounds:
        return "must be " + " and ".join(bounds).replace(".0 ", " ").removesuffix(".0")
    msg = error["msg"].removeprefix("Value error, ")
    return msg[0].lower() + msg[1:]


def _raise_validation(config_cls: type[Config], err: ValidationError, source: str,
                      given: dict[str, Any]) -> None:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"] if not isinstance(p, int)]
    dotted = ".".join(loc[:2])
    value = given.get(dotted, first.get("input"))
    where = f"{dotted}={value!r}" if dotted else "config"
    allowed = _allowed(first)
    bound = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")
    if first["type"] in bound and len(loc) >= 2:
        field = sections(config_cls)[loc[0]].model_fields.get(loc[1])
        rule = _range(field) if field is not None and len(loc) == 2 else ""
        allowed = f"must be {rule.replace(', ', ' and ')}" if rule else allowed
    raise ConfigError(f"{source}: {where} {allowed}") from None


def build(config_cls: type[Config], values: list[tuple[str, Any, str]]) -> Config:
    """A validated config from ``(dotted key, value, source)`` triples (later ones win)."""
    nested: dict[str, dict[str, Any]] = {}
    sources: dict[str, str] = {}
    given: dict[str, Any] = {}
    for dotted, value, source in values:
        sec, key = dotted.split(".", 1)
        nested.setdefault(sec, {})[key] = value
        sources[dotted], given[dotted] = source, value
    try:
        config = config_cls.model_validate({s: v for s, v in nested.items()})
    except ValidationError as err:
        first = err.errors()[0]
        loc = [str(p) for p in first["loc"] if not isinstance(p, int)]
        _raise_validation(config_cls, err, sources.get(".".join(loc[:2]), "config"), given)
    config.check()
    return config


# ------------------------------------------------------------------------------------ loading
def shipped_configs() -> dict[str, Path]:
    """The configs shipped inside the package: name (file stem) -> path, sorted by name."""
    folder = importlib.resources.files("mcl_video") / "configs"
    return {p.name[: -len(".yaml")]: Path(str(p)) for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.name.endswith(".yaml")}


def resolve_config_path(name_or_path: str | Path) -> Path:
    """An existing file, else the shipped config of that name (``demo_cpu`` or ``demo_cpu.yaml``; also
    ``configs/demo_cpu.yaml``, where the shipped configs were in the repository before they moved into
    the package)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_configs()
    name = path.name.removesuffix(".yaml")
    if path.parent in (Path("."), Path("configs")) and name in shipped:
        return shipped[name]
    raise ConfigError(f"{name_or_path}: config file not found; give a path to a YAML file or the name of "
                      f"a shipped config ({', '.join(shipped)})")


def read_yaml(path: Path) -> dict:
    """A config file's mapping; unreadable, non-UTF-8, malformed YAML or tags: one-line ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; save the config as UTF-8 YAML") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config ({err.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or " ".join(str(err).split())
        raise ConfigError(f"{path}: not valid YAML{at} ({problem}); fix the file") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of section: {{key: value}}")
    return raw


def _includes(config_cls: type[Config], path: Path, seen: tuple[Path, ...]) -> list[tuple[str, Any, str]]:
    """The file's key values, after those of the files its ``defaults:`` list names (composition)."""
    raw = read_yaml(path)
    base = raw.pop("defaults", None)
    out: list[tuple[str, Any, str]] = []
    if base is not None:
        names = base if isinstance(base, list) else [base]
        for name in names:
            if not isinstance(name, str):
                raise ConfigError(f"{path}: defaults must name config files, got {name!r}")
            parent = Path(name) if Path(name).is_absolute() else path.parent / name
            parent = parent if parent.is_file() else resolve_config_path(name)
            if parent.resolve() in seen:
                raise ConfigError(f"{path}: defaults include {name} again (a cycle); remove it")
            out += _includes(config_cls, parent, (*seen, parent.resolve()))
    return out + [(k, v, str(path)) for k, v in _pairs(config_cls, raw, str(path))]


def _is_text_key(config_cls: type[Config], name: str) -> bool:
    """Whether ``name`` is a plain string key (its command-line text is taken as typed)."""
    secs = sections(config_cls)
    plain = name.lstrip("-").replace("-", "_")
    if (plain in secs and plain not in config_cls.RENAMED) or plain in config_cls.MERGED:
        return False
    try:
        dotted = resolve_key(config_cls, name, "command line")
    except ConfigError:
        return False
    sec, key = dotted.split(".", 1)
    return secs[sec].model_fields[key].annotation is str


def parse_overrides(config_cls: type[Config], overrides: list[str] | None) -> list[tuple[str, Any, str]]:
    """``["seed=1", "sampling.motion_prob=0.5"]`` -> dotted ``(key, value, source)`` triples."""
    out = []
    for item in overrides or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"command line: override '{item}' must look like key=value (e.g. seed=1)")
        name = key.strip()
        if _is_text_key(config_cls, name):  # a path or a name: as typed (007 stays 007)
            value: Any = text
        else:
            value = _parse_text(text, key, "command line")
        out += [(k, v, "command line") for k, v in _pairs(config_cls, {name: value}, "command line")]
    return out


def load(config_cls: type[Config], path: str | Path | None = None,
         overrides: list[str] | None = None) -> Config:
    """Read a YAML config (a path or a shipped config's name; None: the defaults), apply ``key=value``
    overrides, validate."""
    values: list[tuple[str, Any, str]] = []
    if path is not None:
        resolved = resolve_config_path(path)
        values = _includes(config_cls, resolved, (resolved.resolve(),))
    return build(config_cls, values + parse_overrides(config_cls, overrides))


def from_dict(config_cls: type[Config], values: dict, source: str = "checkpoint") -> Config:
    """A config from saved data (nested, or flat as older checkpoints and run folders hold it)."""
    return build(config_cls, [(k, v, source) for k, v in _pairs(config_cls, dict(values), source)])


def config_to_dict(config: Config) -> dict[str, dict[str, Any]]:
    """Plain nested dict (primitives and plain containers only: safe for
    ``torch.load(weights_only=True)``)."""
    return config.model_dump(mode="json")


def flatten(config_or_dict: Config | dict) -> dict[str, Any]:
    """``{"section.key": value}`` of a config (or of its :func:`config_to_dict`)."""
    data = config_to_dict(config_or_dict) if isinstance(config_or_dict, Config) else config_or_dict
    return {f"{s}.{k}": v for s, sec in data.items() if isinstance(sec, dict) for k, v in sec.items()}


def replace(config: Config, **updates: Any) -> Config:
    """A copy with ``section__key=value`` or ``{"section.key": value}``-style updates, validated."""
    values = [(k, v, "config") for k, v in flatten(config).items()]
    values += [(resolve_key(type(config), k.replace("__", "."), "config"), v, "config")
               for k, v in updates.items()]
    return build(type(config), values)


# ------------------------------------------------------------------------------------ help text
def _type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _type_name(get_args(annotation)[0])
    if origin is not None and str(origin) == "typing.Literal":
        return "|".join(str(a) for a in get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in get_args(annotation) if a is not type(None))
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{args}]" if name in ("list", "tuple", "dict") else " | ".join(
            _type_name(a) for a in get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def _range(field) -> str:
    parts = []
    for meta in field.metadata:
        for attr, word in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(meta, attr, None) is not None:
                parts.append(f"{word} {getattr(meta, attr)}")
        if getattr(meta, "allow_inf_nan", None) is False and not parts:
            parts.append("finite")
    return ", ".join(parts)


def describe(config_cls: type[Config]) -> str:
    """The key table for ``--help``: ``section.key  type (range)  default  what it does``."""
    lines = []
    defaults = flatten(config_cls())
    for sec, sec_cls in sections(config_cls).items():
        lines.append(f"{sec}:")
        for key, field in sec_cls.model_fields.items():
            kind = _type_name(field.annotation)
            rule = _range(field)
            kind = f"{kind} {rule}" if rule else kind
            default = defaults[f"{sec}.{key}"]
            text = f"  {sec}.{key} ({kind}, default {default!r})"
            if field.description:
                text += f": {' '.join(field.description.split())}"
            lines.append(text)
    return "\n".join(lines)


def is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
