"""`MappoConfig`: every knob of a run in one dataclass, which also makes the CLI.

The first block holds the specification's fields with the specification's
defaults; the rest are our additions. Each field's `help` is its one-line doc
and becomes its `--flag` help text.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import numbers
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import tomli_w

from mappo.errors import ConfigError, EnvMismatchError

# A setting that may be left to the env: True, False or "auto" (`mappo.task_settings`).
AutoBool = bool | str
AUTO = "auto"
KIND_NAMES = {"AutoBool": "true, false or auto"}  # how errors name a field's type


def _f(default: Any, help: str, **choices: Any) -> Any:
    """A dataclass field whose metadata carries its one-line doc (and allowed values)."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help, **choices})
    return field(default=default, metadata={"help": help, **choices})


@dataclass
class MappoConfig:
    """Configuration of a MAPPO run (specification fields first, then ours).

    `given` holds the names of the fields its creator set explicitly (copy a
    config with `replace`, which keeps it; `dataclasses.replace` passes every
    field and so marks them all as set). `auto_decided` holds those an `auto`
    was decided for by `task_settings.resolve_auto`, for the env of the run.
    """

    # --- specification fields, specification defaults -------------------------
    num_agents: int = _f(2, "number of agents (taken from the env when training starts)")
    share_policy: bool = _f(True, "one policy for all agents (seeing an agent one-hot: agent_id)")
    agent_id: AutoBool = _f(
        "auto",
        "append each agent's one-hot to a shared policy's "
        "observation; auto: as the env family's official code (else true)",
    )
    use_global_state: bool = _f(True, "critic sees the env's global state, else concatenated obs")
    obs_dim: int = _f(16, "local observation size (taken from the env)")
    global_state_dim: int = _f(32, "critic input size (taken from the env)")
    action_dim: int = _f(5, "policy output size per agent (taken from the env)")
    clip_coef: float = _f(0.2, "PPO ratio clip, also the value clip")
    vf_coef: float = _f(0.5, "value loss coefficient")
    ent_coef: float = _f(0.01, "entropy bonus coefficient")
    gamma: float = _f(0.99, "discount factor")
    gae_lambda: float = _f(0.95, "GAE lambda")
    update_epochs: int = _f(10, "passes over each rollout")
    minibatch_size: int = _f(256, "agent-steps per minibatch (one optimizer step each); 0 = all")
    # --- our additions ---------------------------------------------------------
    env: str = _f(
        "spread",
        "built-in env (spread, reference, speaker_listener), vmas:<scenario>, "
        "jaxmarl:<name>, jumanji:<id>, gymnasium:<module>:<id> (Tuple spaces over agents), or "
        "module:callable returning a PettingZoo ParallelEnv or AECEnv or a vectorized env",
    )
    env_kwargs: dict = _f({}, "keyword arguments for the env constructor (JSON on the CLI)")
    num_workers: int = _f(0, "worker processes stepping PettingZoo envs; 0 steps them in-process")
    policy_groups: str = _f("", "comma-separated agent-name prefixes, one policy per prefix")
    total_steps: int = _f(1_500_000, "env steps to train for (one step = all agents act once)")
    num_envs: int = _f(128, "env copies stepped together")
    rollout_steps: int = _f(25, "steps per env per rollout (T)")
    lr: float = _f(7e-4, "Adam learning rate for actor and critic")
    adam_eps: float = _f(1e-5, "Adam epsilon")
    anneal_lr: bool = _f(False, "decay the learning rate linearly to zero over the run")
    hidden_dim: int = _f(64, "width of the two hidden layers of actor and critic")
    activation: str = _f("tanh", "hidden activation", choices=("tanh", "relu"))
    input_layer_norm: bool = _f(False, "LayerNorm on the actor's and critic's inputs")
    hidden_layer_norm: bool = _f(False, "LayerNorm after each hidden layer (and the GRU)")
    encoder: str = _f(
        "auto",
        "observation encoder before the MLP: cnn (images: Boxes with 3 "
        "axes), mlp (flattened); auto: cnn for images, mlp otherwise",
        choices=("auto", "cnn", "mlp"),
    )
    image_layout: str = _f(
        "auto",
        "axis order of image observations and states: hwc "
        "(channels last), chw (channels first); auto: the env's own where "
        "it says it (JaxMARL: hwc), else read off the shape where only "
        "one order has 1, 3 or 4 channels beside two larger sides (84x84x3: "
        "hwc), else an error asking for hwc or chw",
        choices=("auto", "hwc", "chw"),
    )
    critic: str = _f(
        "centralized",
        "centralized: one critic on the global view (MAPPO); "
        "local: each agent's critic sees its own observation (IPPO)",
        choices=("centralized", "local"),
    )
    recurrent: bool = _f(False, "GRU after the MLP in the actor, and in the critic (rMAPPO)")
    critic_recurrent: bool = _f(
        True,
        "with recurrent: the critic's GRU too (the official MAPPO code's); false: a "
        "feed-forward critic beside the recurrent actor (EPyMARL's)",
    )
    data_chunk_length: int = _f(10, "steps per training sequence of a recurrent policy")
    policy_head_gain: float = _f(0.01, "orthogonal init gain of the policy head")
    max_grad_norm: float = _f(10.0, "global gradient-norm clip")
    norm_adv: bool = _f(True, "normalize advantages per minibatch")
    value_norm: bool = _f(True, "normalize value targets with running statistics")
    value_norm_beta: float = _f(0.99999, "decay of the value normalizer's running moments")
    reward_norm: bool = _f(
        False,
        "divide each update's rewards by the running root mean square of all rewards so far, "
        "before GAE (EPyMARL's standardise_rewards, without its mean shift)",
    )
    bootstrap_time_limits: AutoBool = _f(
        "auto",
        "bootstrap episodes cut by a time limit from their last state's value, else "
        "treat the cut as terminal; auto: terminal where the limit is part of the task (MPE, "
        "SMAX), else bootstrap",
    )
    critic_time_left: AutoBool = _f(
        "auto",
        "the centralized critic also reads the fraction of the episode's time limit "
        "left; auto: where time limits are terminal and the env has one",
    )
    team_reward: AutoBool = _f(
        "auto",
        "credit every agent slot with the mean reward of the agents that acted, until "
        "its env's episode ends (dead agents too), instead of its own reward until it dies; "
        "auto: as the env family's official code (else false)",
    )
    clip_value_loss: bool = _f(True, "clip the value update around the old prediction")
    huber_delta: float = _f(0.0, "Huber loss delta for the value loss; 0 means squared error")
    seed: int = _f(0, "random seed for torch, the env and minibatch order")
    device: str = _f("cpu", "torch device", choices=("cpu", "cuda"))
    compile: str = _f(
        "auto",
        "torch.compile the minibatch loss; auto: feed-forward runs of 200k+ steps",
        choices=("auto", "true", "false"),
    )
    torch_threads: int = _f(1, "intra-op threads (small ops gain nothing); 0 = torch's choice")
    checkpoint_interval: float = _f(
        300.0, "seconds of wall time between checkpoints (also one after the first update)"
    )
    eval_interval: int = _f(
        0,
        "env steps between greedy evaluations on env copies of their own (best.pt keeps "
        "the best policy); 0 = off",
    )
    eval_episodes: int = _f(32, "episodes per evaluation during training")

    if TYPE_CHECKING:
        # Set on every instance by `_record_given`'s wrapper of `__init__`, and reassigned by
        # those who copy a config. Not a dataclass field at run time (it stays out of
        # `to_dict`, `save`, `FIELDS`, the CLI, `repr` and equality): declared for the
        # type checker alone.
        given: frozenset[str] = field(init=False, repr=False, compare=False)
        auto_decided: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def critic_uses_state(self) -> bool:
        """Whether the critic reads the env's global state (so the env must produce one)."""
        return self.use_global_state and self.critic == "centralized"

    def decided(self, name: str) -> bool:
        """The value of the `auto`-able field `name` once decided for an env
        (`task_settings.resolve_auto`); still `auto` here is a ConfigError."""
        value = getattr(self, name)
        if not isinstance(value, bool):
            raise ConfigError(
                f"config key '{name}' = {value!r} is decided per env: pass the config "
                "through mappo.task_settings.resolve_auto first"
            )
        return value

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field, ready for TOML or a checkpoint."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> MappoConfig:
        """A copy with some fields changed (validated like any config); the changed fields
        count as given."""
        copy = from_dict({**self.to_dict(), **changes})
        copy.given = self.given | frozenset(changes)
        copy.auto_decided = self.auto_decided - frozenset(changes)
        return copy

    def save(self, path: str | Path) -> None:
        """Write the full config as TOML, loadable with `load` or `--config`.

        The fields read off the env go in a `[read_off_env]` table, and those an
        `auto` was decided for stay `auto`, their values in an `[auto_decided]`
        table: both say what the run's env was, and reading the file back skips
        them, so the file starts the same run on the same env, or a run on another
        env with that env's own facts and conventions.
        """
        Path(path).write_text(self.to_toml(), encoding="utf-8")  # TOML is UTF-8 by definition

    def to_toml(self) -> str:
        """The text `save` writes."""
        data = self.to_dict()
        facts = {name: data.pop(name) for name in ENV_DIM_FIELDS}
        decided = {name: data[name] for name in sorted(self.auto_decided)}
        data.update(dict.fromkeys(decided, AUTO))
        tables = {READ_OFF_ENV: facts, AUTO_DECIDED: decided} if decided else {READ_OFF_ENV: facts}
        return tomli_w.dumps({**data, **tables})

    def matched_to_env(self, env_name: str, **facts: int) -> MappoConfig:
        """Take the env's facts (`num_agents`, `obs_dim`, `global_state_dim`, `action_dim`,
        `num_envs`), then run the checks that need them.

        A field the user did not set is simply replaced; one that was set (as a
        keyword, in a file or as a flag) must agree with the env, even when it
        equals the default.
        """
        for name, env_value in facts.items():
            value = getattr(self, name)
            if name in self.given and value != env_value:
                raise EnvMismatchError(
                    f"config key '{name}' = {value} contradicts env '{env_name}', "
                    f"which has {name} = {env_value}; leave it unset to take the env's"
                )
        matched = self.replace(**facts)
        matched.given = self.given  # the env's values are not the user's choices
        batch = matched.num_envs * matched.rollout_steps * matched.num_agents
        if matched.minibatch_size > batch:
            unset = "minibatch_size" not in self.given
            default = (
                " (the default)"
                if unset and self.minibatch_size == FIELDS["minibatch_size"].default
                else " (the preset's)"
                if unset
                else ""
            )
            raise EnvMismatchError(
                f"config key 'minibatch_size' = {matched.minibatch_size}{default}: must be <= "
                f"the batch of num_envs*rollout_steps*num_agents = {batch} for env "
                f"'{env_name}' (0 takes the whole batch)"
            )
        return matched

    @classmethod
    def load(cls, path: str | Path) -> MappoConfig:
        """Read a TOML file holding any subset of the fields."""
        values, chosen, _ = read_config_file(path)
        config = from_dict(values, source=str(path))
        config.given = chosen
        return config


class ConfigFile(NamedTuple):
    """A TOML config file's keys: `values`, unvalidated; `chosen`, the names that count as
    set by the user (`MappoConfig.given`); and `decided`, what a run's `auto` settings
    became for its env (its `[auto_decided]` table)."""

    values: dict[str, Any]
    chosen: frozenset[str]
    decided: dict[str, Any]


def read_config_file(path: str | Path) -> ConfigFile:
    """The keys a TOML config file sets. All are choices, except in a run's own config.toml,
    which holds every field: there the fields at their defaults were no one's choice, and
    counting them as set would warn about settings the user never made."""
    path = Path(path)
    try:
        # utf-8-sig: Windows editors save UTF-8 with a byte-order mark, which TOML refuses.
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    except UnicodeDecodeError as err:  # e.g. saved as UTF-16 (PowerShell's `>`) or Latin-1
        raise ConfigError(
            f"cannot read config file {path}: byte {err.object[err.start]:#04x} at position "
            f"{err.start} is not UTF-8; a TOML file must be UTF-8 text"
        ) from None
    written_by_run = READ_OFF_ENV in data
    tables = {table: data.pop(table, {}) for table in (READ_OFF_ENV, AUTO_DECIDED)}
    for table, content in tables.items():
        if not isinstance(content, dict):
            raise ConfigError(f"config file {path}: '{table}' must be a table")
    check_keys(data, str(path))
    defaults = field_defaults() if written_by_run else {}
    at_default = {
        name
        for name, value in data.items()
        if name in defaults and type(value) is type(defaults[name]) and value == defaults[name]
    }
    return ConfigFile(data, frozenset(data) - at_default, tables[AUTO_DECIDED])


def read_toml(path: str | Path) -> dict[str, Any]:
    """The keys a TOML config file sets, unvalidated."""
    return read_config_file(path).values


def field_defaults() -> dict[str, Any]:
    """Every MappoConfig field's default."""
    return {
        name: f.default_factory() if callable(f.default_factory) else f.default
        for name, f in FIELDS.items()
    }


def _record_given(cls: type[MappoConfig]) -> type[MappoConfig]:
    """Wrap the dataclass `__init__` so that a config knows which fields its caller set.

    `config.given` is the frozenset of those names (keywords, positional
    arguments, keys of a file or of flags): checks against the env refuse a set
    value that contradicts it, even one equal to the default, and warn about a
    set flag that cannot take effect.
    """
    generated = cls.__init__
    names = [f.name for f in dataclasses.fields(cls)]

    @functools.wraps(generated)
    def init(self: MappoConfig, *args: Any, **kwargs: Any) -> None:
        check_keys(kwargs, "MappoConfig(...)")  # a typo is named with its nearest field
        self.given = frozenset(names[: len(args)]) | frozenset(kwargs)
        self.auto_decided = frozenset()
        generated(self, *args, **kwargs)

    cast(Any, cls).__init__ = init  # replaces the method on purpose, which mypy refuses
    return cls


_record_given(MappoConfig)
FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(MappoConfig)}
ENV_DIM_FIELDS = ("num_agents", "obs_dim", "global_state_dim", "action_dim")
READ_OFF_ENV = "read_off_env"  # config.toml's table of ENV_DIM_FIELDS (facts, not settings)
AUTO_DECIDED = "auto_decided"  # config.toml's table of what `auto` became for the run's env


def _kind(name: str) -> str:
    """The field's declared type as written: "int", "AutoBool", ... (annotations are strings
    here, under `from __future__ import annotations`)."""
    return cast(str, FIELDS[name].type)


def coerce_field(name: str, value: Any) -> Any:
    """Check `value` against the field's declared type; convert only lossless cases: an int
    to a float field's float, an integral float to an int field's int."""
    kind = _kind(name)
    # numpy's scalars (a value read off an array, a sweep's np.linspace) as Python's.
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | int):
        value = int(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, float | int):
        value = float(value)
    # TOML writes `1e6` and `20e6` only as floats, and budgets are written so.
    if kind == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)
    # `compile = false` in Python or TOML means the choice "false".
    if isinstance(value, bool) and "true" in FIELDS[name].metadata.get("choices", ()):
        value = str(value).lower()
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "str": isinstance(value, str),
        "dict": isinstance(value, dict),
        "AutoBool": isinstance(value, bool) or value == AUTO,
    }[kind]
    if not ok:
        raise ConfigError(f"config key '{name}' = {value!r}: expected {KIND_NAMES.get(kind, kind)}")
    if kind == "int" and not -(2**63) <= value < 2**63:  # TOML's integers, and torch's
        raise ConfigError(
            f"config key '{name}' = {value!r}: must fit in 64 bits (from -2**63 to below 2**63)"
        )
    return float(value) if kind == "float" else value


def check_savable(config: MappoConfig) -> None:
    """Refuse, before any work, a config whose run folder could not hold its config.toml:
    a trainer in memory takes any env_kwargs (an object, None), a run folder only what
    TOML writes."""
    for name in FIELDS:
        value = getattr(config, name)
        if _kind(name) == "dict" and (problem := _not_toml(value, name)):
            raise ConfigError(f"config key '{name}' = {value!r}: {problem}")


def _not_toml(value: Any, where: str) -> str | None:
    """Why config.toml cannot hold `value` (found at `where`), or None: TOML has strings,
    numbers, booleans, lists and tables of them, and no null."""
    if value is None:
        return (
            f"{where} is None, which config.toml cannot hold (leave a keyword out for its default)"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has the key {key!r}: keys must be strings"
            if problem := _not_toml(item, f"{where}[{key!r}]"):
                return problem
        return None
    if isinstance(value, list | tuple):
        return next(
            (p for i, item in enumerate(value) if (p := _not_toml(item, f"{where}[{i}]"))), None
        )
    if isinstance(value, str | bool | int | float):
        return None
    return (
        f"{where} is a {type(value).__name__}, which config.toml cannot hold: give strings, "
        "numbers, booleans, lists or dicts of them"
    )


def from_dict(data: dict[str, Any], source: str = "config") -> MappoConfig:
    """Build a config from a mapping, refusing unknown keys with a suggestion."""
    check_keys(data, source)
    return MappoConfig(**data)


# Field names users bring from other libraries, mapped to ours (difflib does not find these).
NAME_ALIASES = {
    "learning_rate": "lr",
    "entropy_coef": "ent_coef",
    "value_coef": "vf_coef",
    "clip_range": "clip_coef",
    "n_envs": "num_envs",
    "n_steps": "rollout_steps",
    "batch_size": "minibatch_size",
    "n_epochs": "update_epochs",
    "ppo_epoch": "update_epochs",
    "num_env_steps": "total_steps",
    "total_timesteps": "total_steps",
}


def nearest_name(name: str, names: list[str]) -> list[str]:
    """`[the name in names that `name` most likely means]`, or [] when none is near."""
    if NAME_ALIASES.get(name) in names:
        return [NAME_ALIASES[name]]
    return difflib.get_close_matches(name, names, n=1)


def check_keys(data: dict[str, Any], source: str) -> None:
    """Refuse keys that are not config fields, naming the source and the nearest field."""
    for key in data:
        if key not in FIELDS:
            near = nearest_name(key, list(FIELDS))
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"unknown config key {key!r} in {source}{hint}")


# The seeds a new run may take (`check_new_seed`). Env copies, ranks and evaluation envs
# are seeded with this seed plus an offset, within torch's 64 bits; numpy, Gymnasium and
# PettingZoo refuse a seed below 0, which runs of the built-in envs were once saved with:
# `validate` still takes those, so that they load.
MAX_SEED = 2**62
SEED_RANGE = "between 0 and 2**62"


def check_new_seed(seed: int, given: str = "config key 'seed'") -> None:
    """Refuse a new run's seed outside `SEED_RANGE` in one line naming where it was
    `given`: below 0 a Gymnasium or PettingZoo env fails at its first reset."""
    if not 0 <= seed < MAX_SEED:
        raise ConfigError(f"{given} = {seed}: must be an integer {SEED_RANGE}")


def validate(cfg: MappoConfig) -> None:
    """Bring each field to its declared type (`coerce_field`: 20e6 → 20000000), then raise
    `ConfigError` naming the first field whose value cannot work."""
    for name in FIELDS:
        setattr(cfg, name, coerce_field(name, getattr(cfg, name)))

    def need(cond: bool, name: str, allowed: str) -> None:
        if not cond:
            raise ConfigError(f"config key '{name}' = {getattr(cfg, name)!r}: must be {allowed}")

    for name in ("gamma", "gae_lambda"):
        need(0.0 <= getattr(cfg, name) <= 1.0, name, "in [0, 1]")
    need(cfg.minibatch_size >= 0, "minibatch_size", ">= 0 (0: the whole rollout at once)")
    for name in (
        "num_agents",
        "obs_dim",
        "global_state_dim",
        "action_dim",
        "update_epochs",
        "total_steps",
        "num_envs",
        "rollout_steps",
        "hidden_dim",
        "data_chunk_length",
    ):
        need(getattr(cfg, name) >= 1, name, "an integer >= 1")
    for name in ("lr", "adam_eps", "max_grad_norm", "policy_head_gain"):
        need(getattr(cfg, name) > 0 and math.isfinite(getattr(cfg, name)), name, "> 0")
    for name in ("clip_coef", "vf_coef", "ent_coef", "huber_delta"):
        need(getattr(cfg, name) >= 0 and math.isfinite(getattr(cfg, name)), name, ">= 0")
    need(0.0 < cfg.value_norm_beta <= 1.0, "value_norm_beta", "in (0, 1]")
    # torch crashes (a segfault) building a pool of 100,000 threads; no machine has 1,024 cores.
    need(0 <= cfg.torch_threads <= 1024, "torch_threads", "between 0 and 1024")
    need(cfg.num_workers >= 0, "num_workers", ">= 0")
    need(abs(cfg.seed) < MAX_SEED, "seed", f"an integer {SEED_RANGE}")  # saved runs: also < 0
    need(cfg.checkpoint_interval > 0, "checkpoint_interval", "> 0 seconds")
    need(cfg.eval_interval >= 0, "eval_interval", ">= 0 env steps (0: no evaluation)")
    need(cfg.eval_episodes >= 1, "eval_episodes", "an integer >= 1")
    for name, f in FIELDS.items():
        if "choices" in f.metadata:
            need(
                getattr(cfg, name) in f.metadata["choices"],
                name,
                "one of " + ", ".join(f.metadata["choices"]),
            )
    if cfg.policy_groups and not cfg.share_policy:
        raise ConfigError(
            f"config key 'policy_groups' = {cfg.policy_groups!r} shares one policy per prefix "
            "and needs share_policy = true; share_policy = false (set here or by a preset) "
            "asks for one policy per agent"
        )


def parse_cli_value(name: str, text: str) -> Any:
    """Turn one `--flag value` string into the field's type, or raise ConfigError."""
    kind = _kind(name)
    if kind == "AutoBool" and text.lower() == AUTO:
        return AUTO
    try:
        if kind in ("bool", "AutoBool"):
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind == "int":
            return _parse_int(text)
        if kind == "float":
            return float(text)
        if kind == "dict":
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError
            return value
        return text
    except json.JSONDecodeError as err:  # say where the JSON breaks, not just "dict"
        raise ConfigError(
            f"config key '{name}' = {text!r}: not JSON ({err.msg} at character {err.pos}); "
            """give an object, e.g. '{"n_agents": 4}'"""
        ) from None
    except ValueError:
        raise ConfigError(
            f"config key '{name}' = {text!r}: expected {KIND_NAMES.get(kind, kind)}"
        ) from None


def _parse_int(text: str) -> int:
    """An integer written plainly or as `1e6` / `2.5e7`, exactly: a float would round a
    large seed or budget (`12345678901234567` is not a double). ValueError otherwise."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(text) from None
    # A bound on the exponent first: int() of `1e9999999` would take minutes.
    if not value.is_finite() or value.adjusted() > 63 or value != value.to_integral_value():
        raise ValueError(text)
    return int(value)


def parse_sweep(items: Sequence[str]) -> dict[str, list[Any]]:
    """`--sweep lr=1e-4,3e-4 --sweep ent_coef=0,0.01` → `{"lr": [1e-4, 3e-4], "ent_coef":
    [0.0, 0.01]}`, each value parsed to its field's type; a bad item is one ConfigError."""
    sweep: dict[str, list[Any]] = {}
    for item in items:
        name, equals, values = item.partition("=")
        field = name.strip().replace("-", "_")
        if not equals or not values.strip():
            raise ConfigError(f"--sweep {item!r}: give FIELD=VALUE,VALUE,... e.g. lr=1e-4,3e-4")
        if field not in FIELDS:
            near = nearest_name(field, list(FIELDS))
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"--sweep {item!r}: {field!r} is not a config field{hint}")
        if field in sweep:
            raise ConfigError(f"--sweep {field}: given twice; list its values once")
        sweep[field] = [parse_cli_value(field, value.strip()) for value in values.split(",")]
    return sweep
