"""Typed configuration: the top-level schema in Hydra's ConfigStore, and a check of every component.

Hydra composes YAML from `conf/`; the `Config` dataclass below types the top-level keys, so
`seed=abc` or an unknown top-level key fails at composition with Hydra's own message. Component
nodes (`_target_` + arguments) are checked against the signature of the class or function they
construct, so `tuner.stepz=3` or `tuner.steps=abc` fails before any work starts, naming the key.
"""

import importlib
import inspect
import logging
import types
import typing
import warnings
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf, open_dict

from pti_lab.errors import PTILabError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")
MODES = ("single", "multi")  # single: a generator per image; multi: one for all images (multi-ID)
# Into a run directory that holds results of other settings (pti_lab/run_record.py): auto = refuse,
# restart = move the old outputs aside and start over, force = continue anyway.
RESUME_MODES = ("auto", "restart", "force")
# Top-level nodes built with hydra.utils.instantiate; null = the stage is off (tuner=none, editor=none, ...).
COMPONENTS = ("generator", "data", "inverter", "tuner", "regularizer", "identity", "perceptual", "editor",
              "metrics", "logger")


@dataclass
class PreviewConfig:
    count: int = 8                 # seeded samples rendered into preview.png (>= 1; preview=null: none)
    truncation_psi: float = 0.7    # truncation of the preview samples
    noise_mode: str = "const"      # 'const', 'random' or 'none'


@dataclass
class Config:
    seed: int = 0                  # global seed (sampling, initialisation)
    device: str = "auto"           # 'auto', 'cpu', 'cuda' or 'cuda:N'
    mode: str = "single"           # 'single': a generator tuned per image; 'multi': one for all images (multi-ID)
    batch_size: int = 1            # images per group of the run's loop (single mode)
    reuse_inversions: bool = True  # take an inversion made before (same generator, image, inverter, seed) from the cache
    resume: str = "auto"           # into a run dir of other settings: 'auto' refuses, 'restart' starts over, 'force' continues
    report: Any = None             # labels copied into summary.json["report"] (experiment, method, ...) for tables
    paper: Any = None              # +experiment=paper: {experiments, dir}; run.py runs those sweeps instead of a run
    preview: Optional[PreviewConfig] = field(default_factory=PreviewConfig)  # null: no preview.png
    generator: Any = MISSING       # component: conf/generator
    data: Any = None               # component: conf/data (the images)
    inverter: Any = None           # component: conf/inverter (image -> pivot)
    tuner: Any = None              # component: conf/tuner (pivot -> tuned generator); null = no tuning
    regularizer: Any = None        # component: conf/regularizer (locality); null = none
    identity: Any = None           # component: conf/identity (face identity for id_sim)
    perceptual: Any = None         # component: conf/perceptual (LPIPS network)
    editor: Any = None             # component: conf/editor (latent edits after tuning); null = none
    metrics: Any = None            # component: conf/metrics (editing metrics and their attribute scorer)
    logger: Any = None             # component: conf/logger (W&B or none)
    paths: Any = MISSING           # conf/paths


def register_configs() -> None:
    ConfigStore.instance().store(name="base_config", node=Config)
    # conf/hydra/launcher/{joblib,submitit_slurm,submitit_local}.yaml set our defaults and are meant to be
    # checked against the plugins' schemas of the same names; Hydra does that, with a deprecation warning.
    warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema",
                            category=UserWarning)


class ConfigError(PTILabError, ValueError):
    """A configuration value or key is wrong; the message names its full key."""


def apply_aliases(cfg: DictConfig) -> None:
    """Deprecated spellings, mapped onto their replacements before any check: `tuner.mode` -> `mode`."""
    tuner = cfg.get("tuner")
    if tuner is not None and "mode" in tuner:
        with open_dict(cfg):
            old = tuner.pop("mode")
            if old is not None:
                log.warning("tuner.mode=%s is deprecated; use the top-level mode=%s", old, old)
                cfg.mode = old


def check_config(cfg: DictConfig) -> None:
    """Everything a run checks before any work: deprecated spellings mapped onto their replacements,
    the top-level keys, then every component."""
    apply_aliases(cfg)
    check_top_level(cfg)
    check_switched_off(cfg)
    check_components(cfg)


def check_top_level(cfg: DictConfig) -> None:
    """Refuse top-level keys the schema does not know (Hydra lets `+key=value` add any)."""
    known = {f.name for f in dataclasses.fields(Config)}
    unknown = [key for key in cfg if key not in known]
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown top-level key (known: {', '.join(sorted(known))})")
    if cfg.mode not in MODES:
        raise ConfigError(f"mode={cfg.mode!r}: expected one of {', '.join(MODES)}")
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size={cfg.batch_size}: expected a whole number >= 1")
    if cfg.preview is not None and cfg.preview.count < 1:
        raise ConfigError(f"preview.count={cfg.preview.count}: expected a whole number >= 1 (preview=null: no preview)")
    if cfg.resume not in RESUME_MODES:
        raise ConfigError(f"resume={cfg.resume!r}: expected one of {', '.join(RESUME_MODES)}")


def check_switched_off(cfg: DictConfig) -> None:
    """Refuse settings merged into a component that is off: `tuner=none debug=smoke` leaves the debug
    config's {steps, progress} where the null tuner was, which would build no tuner at all."""
    for key in COMPONENTS:
        node = cfg.get(key)
        if isinstance(node, DictConfig) and "_target_" not in node:
            hint = " (for a run without tuning use +method=w|w_plus|e4e|psp: it turns tuning off after the " \
                   "debug configs)" if key == "tuner" else ""
            raise ConfigError(f"{key}: {', '.join(map(str, node))} given to a {key} that is off ({key}=none); "
                              f"drop them{hint}")


def contract_members(contract: type) -> set[str]:
    """The methods and attributes a contract (a typing.Protocol) declares."""
    return {name for name in vars(contract) if not name.startswith("_")} | set(contract.__annotations__)


def check_contract(key: str, component: object, contract: type) -> None:
    """Raise ConfigError (one line) unless `component`, built from config group `key`, fulfils `contract`
    (a runtime_checkable Protocol), naming what it lacks."""
    if isinstance(component, contract):
        return
    missing = sorted(contract_members(contract) - set(dir(component)))
    where = contract.__module__.replace(".", "/") + ".py"
    raise ConfigError(f"{key}: {type(component).__module__}.{type(component).__qualname__} does not fulfil the "
                      f"{contract.__name__} contract of {where} (it has no {', '.join(missing)})")


_META_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def _resolve_target(target: str, key: str) -> Any:
    module_name, _, attr = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"{key}._target_: cannot import {target!r} ({exc})") from None


def _signature(target: Any) -> tuple[dict, dict, bool]:
    """Parameters, type hints and whether unknown keywords are accepted; a class whose __init__
    passes **kwargs on to its base classes gets their parameters too."""
    functions = [target]
    if inspect.isclass(target):
        functions = [cls.__init__ for cls in target.__mro__ if "__init__" in vars(cls) and cls is not object]
    params, hints = {}, {}
    for function in functions:
        signature = inspect.signature(function).parameters
        for name, param in signature.items():
            if param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL) and name != "self":
                params.setdefault(name, param)
        for name, hint in typing.get_type_hints(function).items():
            hints.setdefault(name, hint)
        if not any(p.kind is p.VAR_KEYWORD for p in signature.values()):
            return params, hints, False
    return params, hints, True


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether a config value fits a parameter annotation (primitives, Optional, list, dict)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple, ListConfig)):
            return False
        item_types = typing.get_args(annotation)  # list[float]: every element must be a float
        return len(item_types) != 1 or all(_accepts(item_types[0], item) for item in value)
    if origin is dict or annotation is dict:
        return isinstance(value, (dict, DictConfig))
    return True  # objects built elsewhere (generators, networks): not checked here


def check_components(cfg: DictConfig, key: str = "") -> None:
    """Check every `_target_` node under cfg: known keys only, values of the annotated types."""
    if isinstance(cfg, ListConfig):
        for i, item in enumerate(cfg):
            if isinstance(item, (DictConfig, ListConfig)):
                check_components(item, f"{key}[{i}]")
        return
    if "_target_" in cfg:
        target = _resolve_target(cfg._target_, key)
        params, hints, takes_kwargs = _signature(target)
        for name in cfg:
            if name in _META_KEYS:
                continue
            full = f"{key}.{name}" if key else name
            if name not in params:
                if takes_kwargs:
                    continue
                valid = ", ".join(params)
                raise ConfigError(f"{full}: unknown key for {cfg._target_} (valid keys: {valid})")
            value = OmegaConf.select(cfg, name, throw_on_missing=False)
            if OmegaConf.is_missing(cfg, name):
                raise ConfigError(f"{full}: a value is required (set {full}=...)")
            annotation = hints.get(name, params[name].annotation)
            if not _accepts(annotation, value):
                raise ConfigError(f"{full}={value!r}: expected {_describe(annotation)}")
    for name in cfg:
        child = cfg._get_node(name)
        if isinstance(child, (DictConfig, ListConfig)) and not child._is_missing() and not child._is_none():
            check_components(child, f"{key}.{name}" if key else str(name))


def _describe(annotation: Any) -> str:
    if typing.get_args(annotation):  # list[float], Optional[int]: the full form says more than 'list'
        return str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def resolve_device(name: str):
    """'auto' -> cuda when available, else cpu; 'cuda' without a GPU is an error, not a fallback."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] not in DEVICES[1:]:
        raise ConfigError(f"device={name!r}: expected one of auto, cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r}: CUDA is not available on this machine (use device=cpu or auto)")
    return torch.device(name)

