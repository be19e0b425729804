"""Loading, validating and saving experiment configs.

    cfg = load_config(["config=configs/tokenizer/maskbit_tokenizer_12bit.yaml", "training.per_gpu_batch_size=32"])

The YAML named by `config=` is merged onto the typed schema in `utils.schema`, then the dotted command-line
overrides are merged on top (values are type-inferred by OmegaConf's YAML rules: `1e-4`, `1_350_000`, `[1,2]`,
`true`). Unknown keys and ill-typed values raise `ConfigError` with the key, the value, and a suggestion.
"""
from __future__ import annotations

import difflib
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.nodes import StringNode
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from utils.atomic import atomic_path
from utils.errors import MaskbitError
from utils.schema import Config

ConfigLike = Union[DictConfig, Mapping[str, Any]]

USAGE = """usage: {prog} config=PATH.yaml [section.key=value ...]

  config=PATH          YAML file with the experiment config (merged onto the schema defaults)
  section.key=value    dotted override, e.g. training.per_gpu_batch_size=32 optimizer.params.learning_rate=2e-4
  print_config=true    print the merged config and exit
  --help               this message and the effective config
"""


class ConfigError(MaskbitError, ValueError):
    """A config is invalid: unknown key, wrong value type or missing file."""


def schema_keys(node: Any = None, prefix: str = "") -> list[str]:
    """All dotted keys declared by the schema (leaves and sections)."""
    node = OmegaConf.structured(Config) if node is None else node
    keys = []
    for key in node.keys():
        full = f"{prefix}{key}"
        keys.append(full)
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            keys.extend(schema_keys(child, full + "."))
    return keys


def _closest_key(full_key: str) -> Optional[str]:
    candidates = schema_keys()
    parent = full_key.rsplit(".", 1)[0] if "." in full_key else ""
    siblings = [k for k in candidates if k.rsplit(".", 1)[0] == parent] if parent else [k for k in candidates if "." not in k]
    for pool in (siblings, candidates):
        match = difflib.get_close_matches(full_key, pool, n=1, cutoff=0.6)
        if match:
            return match[0]
    return None


def _raise_readable(err: OmegaConfBaseException, origin: str) -> None:
    full_key = getattr(err, "full_key", None) or getattr(err, "key", None) or "?"
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)) and not isinstance(err, ValidationError):
        hint = _closest_key(str(full_key))
        suggestion = f" Did you mean '{hint}'?" if hint else ""
        raise ConfigError(f"Unknown config key '{full_key}' in {origin}.{suggestion} "
                          f"(valid keys are declared in utils/schema.py)") from None
    msg = getattr(err, "msg", str(err)).split("\n")[0]
    raise ConfigError(f"Invalid value for config key '{full_key}' in {origin}: {msg}") from None


def with_defaults(*sources: ConfigLike, origin: str = "config") -> DictConfig:
    """Merge config fragments (dicts or DictConfigs; later wins) onto the schema and validate them."""
    merged = OmegaConf.structured(Config)
    for source in sources:
        if source is None:
            continue
        try:
            merged = OmegaConf.merge(merged, source)
        except OmegaConfBaseException as err:
            _raise_readable(err, origin)
    _apply_derived(merged)
    return merged


def as_config(config: ConfigLike) -> DictConfig:
    """`config` itself when it is already a merged experiment config (from `load_config` / `with_defaults`), else
    the fragment merged onto the schema defaults. Builders call this, so defaults are merged exactly once."""
    if isinstance(config, DictConfig) and OmegaConf.get_type(config) is Config:
        return config
    return with_defaults(config)


def _apply_derived(cfg: DictConfig) -> None:
    """Values that follow from others (the official scripts set them at run time)."""
    vq = cfg.model.vq_model
    if vq.quantizer_type == "lookup-free":
        vq.codebook_size = 2 ** vq.token_size
    if cfg.dataset.preprocessing.crop_size is not None:
        cfg.dataset.preprocessing.resolution = cfg.dataset.preprocessing.crop_size


# Keys of the official YAMLs that no code reads (there or here): dropped with a warning, so the official files load.
OBSOLETE_OFFICIAL_KEYS = ("losses.discriminator_penalty_cost",)


def load_yaml(path: Union[str, Path]) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Config file not found: '{path}'. Pass an existing YAML, e.g. "
                          f"config=configs/tokenizer/maskbit_tokenizer_12bit.yaml")
    try:
        cfg = OmegaConf.load(path)
    except Exception as err:  # YAML syntax errors come in several exception types
        raise ConfigError(f"Could not parse config file '{path}': {err}") from None
    for key in OBSOLETE_OFFICIAL_KEYS:
        parent, _, leaf = key.rpartition(".")
        section = OmegaConf.select(cfg, parent)
        if isinstance(section, DictConfig) and leaf in section:
            del section[leaf]
            warnings.warn(f"'{path}': ignoring {key}, which the official recipe never reads", stacklevel=2)
    return cfg


def load_config(argv: Optional[Sequence[str]] = None) -> DictConfig:
    """Build the experiment config from `config=PATH` plus dotted overrides (default: sys.argv[1:])."""
    argv = list(sys.argv[1:] if argv is None else argv)
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ConfigError(f"Arguments must look like key=value, got {bad}. If a shard pattern or path was split by "
                          f"the shell, quote it: key='DIR/imagenet-train-{{0000..0252}}.tar'. "
                          f"{USAGE.format(prog='script')}")
    keys = [a.split("=", 1)[0] for a in argv]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ConfigError(f"Command-line key(s) given more than once: {repeated}. An unquoted brace pattern or glob "
                          f"is expanded by the shell into one key=value per file; quote it, e.g. "
                          f"{repeated[0]}='DIR/imagenet-train-{{0000..0252}}.tar', and give each key once.")
    try:
        cli = OmegaConf.from_dotlist(argv)
    except OmegaConfBaseException as err:
        raise ConfigError(f"Could not parse command-line overrides {argv}: {err}") from None
    _keep_raw_strings(cli, argv)
    sources = []
    if cli.get("config"):
        sources.append((load_yaml(cli.config), f"'{cli.config}'"))
    sources.append((cli, "the command line"))
    merged = OmegaConf.structured(Config)
    for source, origin in sources:
        merged = with_defaults(merged, source, origin=origin)
    try:  # resolve interpolations now so that a broken ${...} fails before any work starts
        OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as err:
        _raise_readable(err, "the config (interpolation)")
    return merged


def _keep_raw_strings(cli: DictConfig, argv: Sequence[str]) -> None:
    """String-typed keys keep the text as typed: YAML would turn `mixed_precision=no` into False ("False")."""
    schema = OmegaConf.structured(Config)
    for arg in argv:
        key, raw = arg.split("=", 1)
        node = schema
        for part in key.split("."):
            node = node._get_node(part) if isinstance(node, DictConfig) and part in node else None
            if node is None:
                break
        if isinstance(node, StringNode) and not raw.startswith(("${", "'", '"')):
            OmegaConf.update(cli, key, raw, merge=False)


def parse_args_or_exit(argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> DictConfig:
    """Script entry point: handle --help / print_config=true, report config errors without a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or os.path.basename(sys.argv[0])
    want_help = any(a in ("-h", "--help") for a in argv)
    try:
        cfg = load_config([a for a in argv if a not in ("-h", "--help")])
    except ConfigError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
    if want_help or cfg.print_config:
        if want_help:
            print(USAGE.format(prog=prog))
        print(OmegaConf.to_yaml(cfg, resolve=True))
        sys.exit(0)
    return cfg


def save_config(cfg: DictConfig, path: Union[str, Path]) -> None:
    """Write the fully merged, resolved config (the run's record of what it did)."""
    with atomic_path(path) as tmp:
        OmegaConf.save(cfg, tmp, resolve=True)


def to_plain(cfg: ConfigLike) -> dict:
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, (DictConfig, ListConfig)) else dict(cfg)
