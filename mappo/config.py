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
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

# A setting that may be left to the env: True, False or "auto" (`mappo.task_settings`).
AutoBool = bool | str
AUTO = "auto"
KIND_NAMES = {"AutoBool": "true, false or auto"}  # how errors name a field's type


class ConfigError(ValueError):
    """A config key, type or value that cannot be used; the message names it."""


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
    field and so marks them all as set).
    """

    # --- specification fields, specification defaults -------------------------
    num_agents: int = _f(2, "number of agents (taken from the env when training starts)")
    share_policy: bool = _f(True, "one policy for all agents (seeing an agent one-hot: agent_id)")
    agent_id: AutoBool = _f("auto", "append each agent's one-hot to a shared policy's "
                            "observation; auto: as the env family's official code (else true)")
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
    env: str = _f("spread", "built-in env, or module:callable returning a ParallelEnv or AECEnv")
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
    encoder: str = _f("auto", "observation encoder before the MLP: cnn (images: Boxes with 3 "
                      "axes), mlp (flattened); auto: cnn for images, mlp otherwise",
                      choices=("auto", "cnn", "mlp"))
    image_layout: str = _f("auto", "axis order of image observations and states: hwc "
                           "(channels last), chw (channels first); auto: the env's own where "
                           "it says it (JaxMARL: hwc), else read off the shape where only "
                           "one order has 1, 3 or 4 channels beside two larger sides (84x84x3: "
                           "hwc), else an error asking for hwc or chw",
                           choices=("auto", "hwc", "chw"))
    critic: str = _f("centralized", "centralized: one critic on the global view (MAPPO); "
                     "local: each agent's critic sees its own observation (IPPO)",
                     choices=("centralized", "local"))
    recurrent: bool = _f(False, "GRU after the MLP in actor and critic (rMAPPO)")
    data_chunk_length: int = _f(10, "steps per training sequence of a recurrent policy")
    policy_head_gain: float = _f(0.01, "orthogonal init gain of the policy head")
    max_grad_norm: float = _f(10.0, "global gradient-norm clip")
    norm_adv: bool = _f(True, "normalize advantages per minibatch")
    value_norm: bool = _f(True, "normalize value targets with running statistics")
    value_norm_beta: float = _f(0.99999, "decay of the value normalizer's running moments")
    bootstrap_time_limits: AutoBool = _f(
        "auto", "bootstrap episodes cut by a time limit from their last state's value, else "
        "treat the cut as terminal; auto: terminal where the limit is part of the task (MPE, "
        "SMAX), else bootstrap")
    critic_time_left: AutoBool = _f(
        "auto", "the centralized critic also reads the fraction of the episode's time limit "
        "left; auto: where time limits are terminal and the env has one")
    team_reward: AutoBool = _f(
        "auto", "credit every agent slot with the mean reward of the agents that acted, until "
        "its env's episode ends (dead agents too), instead of its own reward until it dies; "
        "auto: as the env family's official code (else false)")
    clip_value_loss: bool = _f(True, "clip the value update around the old prediction")
    huber_delta: float = _f(0.0, "Huber loss delta for the value loss; 0 means squared error")
    seed: int = _f(0, "random seed for torch, the env and minibatch order")
    device: str = _f("cpu", "torch device", choices=("cpu", "cuda"))
    compile: str = _f("auto", "torch.compile the minibatch loss; auto: for runs of 200k+ steps",
                      choices=("auto", "true", "false"))
    torch_threads: int = _f(1, "intra-op threads (small ops gain nothing); 0 = torch's choice")
    checkpoint_interval: float = _f(
        300.0, "seconds of wall time between checkpoints (also one after the first update)")
    eval_interval: int = _f(
        0, "env steps between greedy evaluations on env copies of their own (best.pt keeps "
        "the best policy); 0 = off")
    eval_episodes: int = _f(32, "episodes per evaluation during training")

    def __post_init__(self) -> None:
        validate(self)

    @property
    def critic_uses_state(self) -> bool:
        """Whether the critic reads the env's global state (so the env must produce one)."""
        return self.use_global_state and self.critic == "centralized"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field, ready for TOML or a checkpoint."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> MappoConfig:
        """A copy with some fields changed (validated like any config); the changed fields
        count as given."""
        copy = from_dict({**self.to_dict(), **changes})
        copy.given = self.given | frozenset(changes)
        return copy

    def save(self, path: str | Path) -> None:
        """Write the full config as TOML, loadable with `load` or `--config`.

        The fields read off the env go in a `[read_off_env]` table: they say what
        the run's env was, and reading the file back skips them, so the file
        starts the same run on the same env, or a run on another env size.
        """
        data = self.to_dict()
        facts = {name: data.pop(name) for name in ENV_DIM_FIELDS}
        Path(path).write_text(tomli_w.dumps({**data, READ_OFF_ENV: facts}))

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
                raise ConfigError(
                    f"config key '{name}' = {value} contradicts env '{env_name}', "
                    f"which has {name} = {env_value}; leave it unset to take the env's"
                )
        matched = self.replace(**facts)
        matched.given = self.given  # the env's values are not the user's choices
        batch = matched.num_envs * matched.rollout_steps * matched.num_agents
        if matched.minibatch_size > batch:
            default = "" if "minibatch_size" in self.given else " (the default)"
            raise ConfigError(
                f"config key 'minibatch_size' = {matched.minibatch_size}{default}: must be <= "
                f"the batch of num_envs*rollout_steps*num_agents = {batch} for env "
                f"'{env_name}' (0 takes the whole batch)"
            )
        return matched

    @classmethod
    def load(cls, path: str | Path) -> MappoConfig:
        """Read a TOML file holding any subset of the fields."""
        return from_dict(read_toml(path), source=str(path))


def read_toml(path: str | Path) -> dict[str, Any]:
    """The keys a TOML config file sets, unvalidated."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from None
    facts = data.pop(READ_OFF_ENV, {})
    if not isinstance(facts, dict):
        raise ConfigError(f"config file {path}: '{READ_OFF_ENV}' must be a table")
    check_keys(data, str(path))
    return data


PAPER_MPE_AGENTS = {"spread": 3, "reference": 2, "speaker_listener": 2}


def paper_mpe_preset(env: str, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The official MAPPO code's MPE settings (rMAPPO) for one of the paper's three tasks.

    Hidden 64 with input LayerNorm, LayerNorm after each hidden layer and a
    GRU, Tanh on Spread (ReLU elsewhere), lr 7e-4, Adam eps 1e-5, 128 envs x 25
    steps, one minibatch, 10 epochs on Spread and 15 on Reference and Comm,
    clip 0.2, entropy 0.01, value coefficient 1, Huber value loss (delta 10)
    with clipping, running value normalization (beta 0.99999), gradient norm
    10, policy head gain 0.01, a shared policy on Spread and Reference and
    separate ones on Comm. Like that code, a shared policy sees no agent id,
    the 25-step time limit ends an episode as a terminal state would (its
    `use_proper_time_limits` is off) with no time left in the critic's input,
    and every agent learns from the team reward (its MPE env gives each agent
    the sum of all agents' rewards in all three tasks, which are
    `collaborative`; it differs from the mean that `team_reward` credits by a
    fixed scale and offset, which value and advantage normalization remove).
    `env_kwargs` change nothing here.
    """
    if env not in PAPER_MPE_AGENTS:
        raise ConfigError(
            f"preset 'paper-mpe' covers the envs {', '.join(PAPER_MPE_AGENTS)}, not {env!r}"
        )
    return dict(
        env=env, recurrent=True, data_chunk_length=10, hidden_dim=64, input_layer_norm=True,
        hidden_layer_norm=True, agent_id=False, bootstrap_time_limits=False,
        activation="tanh" if env == "spread" else "relu", lr=7e-4, adam_eps=1e-5,
        num_envs=128, rollout_steps=25,
        minibatch_size=0,  # the whole rollout in one minibatch
        update_epochs=10 if env == "spread" else 15, clip_coef=0.2, ent_coef=0.01, vf_coef=1.0,
        huber_delta=10.0, clip_value_loss=True, value_norm=True, value_norm_beta=0.99999,
        max_grad_norm=10.0, policy_head_gain=0.01, share_policy=env != "speaker_listener",
        gamma=0.99, gae_lambda=0.95, team_reward=True, critic_time_left=False,
    )


# BenchMARL 1.5.2's task settings for VMAS (benchmarl/conf/task/vmas/<scenario>.yaml), for the
# scenarios of its VMAS benchmark: passed to the scenario as env_kwargs.
BENCHMARL_VMAS_TASKS: dict[str, dict[str, Any]] = {
    "balance": {"max_steps": 100, "n_agents": 4, "random_package_pos_on_line": True,
                "package_mass": 5},
    "navigation": {"max_steps": 100, "n_agents": 3, "collisions": True,
                   "agents_with_same_goal": 1, "split_goals": False,
                   "observe_all_goals": False, "shared_rew": False, "lidar_range": 0.35,
                   "agent_radius": 0.1},
    "sampling": {"max_steps": 100, "n_agents": 3, "shared_rew": False, "n_gaussians": 3,
                 "lidar_range": 0.2, "cov": 0.05, "collisions": True, "spawn_same_pos": False},
    "transport": {"max_steps": 100, "n_agents": 4, "n_packages": 1, "package_width": 0.15,
                  "package_length": 0.15, "package_mass": 50},
    "wheel": {"max_steps": 100, "n_agents": 4, "line_length": 1, "line_mass": 30,
              "desired_velocity": 0.05},
}
BENCHMARL_VMAS_MINIBATCH_FRAMES = 4096  # env steps per minibatch (`on_policy_minibatch_size`)


def benchmarl_vmas_preset(env: str, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """BenchMARL's fine-tuned MAPPO settings for VMAS, on one of its benchmark scenarios.

    From BenchMARL 1.5.2 (git 179a956, July 2025): `fine_tuned/vmas/conf/config.yaml`
    (the experiment), `benchmarl/conf/algorithm/mappo.yaml`,
    `benchmarl/conf/model/layers/mlp.yaml` and `benchmarl/conf/task/vmas/<scenario>.yaml`.

    | BenchMARL | value | mappo field |
    |---|---|---|
    | on_policy_n_envs_per_worker | 600 | num_envs 600 |
    | on_policy_collected_frames_per_batch | 60,000 | rollout_steps 100 (600 x 100) |
    | on_policy_n_minibatch_iters | 45 | update_epochs 45 |
    | on_policy_minibatch_size | 4096 frames | minibatch_size 4096 x n_agents agent-steps |
    | max_n_frames | 10M | total_steps 10M |
    | lr, adam_eps | 5e-5, 1e-6 | lr, adam_eps |
    | gamma (fine-tuned for VMAS), lmbda | 0.9, 0.9 | gamma, gae_lambda |
    | clip_epsilon | 0.2 | clip_coef |
    | entropy_coef | 0 | ent_coef 0 |
    | critic_coef, loss_critic_type | 1, l2: (v-R)^2 | vf_coef 2 (mappo's: (v-R)^2/2) |
    | clip_grad_norm, clip_grad_val | True, 5 | max_grad_norm 5 |
    | normalize_advantage (torchrl ClipPPOLoss) | False | norm_adv false |
    | no value normalization, no value clipping | | value_norm false, clip_value_loss false |
    | mlp num_cells, activation | [256, 256], Tanh | hidden_dim 256, activation tanh |
    | share_policy_params | True (no agent id) | share_policy true, agent_id false |
    | prefer_continuous_actions | True | VMAS continuous_actions (its default here) |
    | evaluation_interval, evaluation_episodes | 120,000, 200 | eval_interval, eval_episodes |
    | task max_steps (truncation, bootstrapped) | 100 | env_kwargs max_steps |

    No mappo equivalent: BenchMARL's continuous policy is a tanh-squashed Gaussian whose
    scale the network outputs (`use_tanh_normal`, `scale_mapping biased_softplus_1.0`);
    mappo's is a Gaussian with a learned state-independent log-std, clipped to the
    bounds. `share_param_critic` True gives one value for all agents from a critic on all
    observations; mappo's centralized critic on the same input has one output per agent.
    BenchMARL steps actor and critic with separate Adam optimizers and clips each one's
    gradient norm; mappo uses one optimizer and one clip. Both init schemes are the
    libraries' own (BenchMARL: torch's default; mappo: orthogonal). `minibatch_size` is
    counted for the task's n_agents; `env_kwargs` (`--env-kwargs`) override single task
    settings.
    """
    scenario = env.removeprefix("vmas:")
    if not env.startswith("vmas:") or scenario not in BENCHMARL_VMAS_TASKS:
        raise ConfigError(
            f"preset 'benchmarl-vmas' covers the envs "
            f"{', '.join('vmas:' + name for name in BENCHMARL_VMAS_TASKS)}, not {env!r}"
        )
    task = {**BENCHMARL_VMAS_TASKS[scenario], **(env_kwargs or {})}
    return dict(
        env=env, env_kwargs=task, num_envs=600, rollout_steps=100, update_epochs=45,
        minibatch_size=BENCHMARL_VMAS_MINIBATCH_FRAMES * task["n_agents"],
        total_steps=10_000_000, lr=5e-5, adam_eps=1e-6, gamma=0.9, gae_lambda=0.9,
        clip_coef=0.2, ent_coef=0.0, vf_coef=2.0, huber_delta=0.0, max_grad_norm=5.0,
        norm_adv=False, value_norm=False, clip_value_loss=False, hidden_dim=256,
        activation="tanh", share_policy=True, agent_id=False, recurrent=False,
        bootstrap_time_limits=True, eval_interval=120_000, eval_episodes=200,
    )


# EPyMARL's episode limits (`env_args.time_limit`) for the benchmark paper's Gymnasium envs,
# by the module that registers them (`gymnasium:<module>:<id>`).
EPYMARL_TIME_LIMITS = {"lbforaging": 50, "rware": 500}


def epymarl_preset(env: str, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """EPyMARL's MAPPO settings (its `src/config/algs/mappo.yaml`) for an LBF or RWARE env.

    Mapped: lr 3e-4 (Adam, torch's eps 1e-8), hidden 128 with ReLU and a GRU,
    an agent one-hot for the shared policy, entropy 0.001, 4 epochs over the
    whole batch (one minibatch), clip 0.2, gradient norm 10, gamma 0.99, a
    centralized critic with an unclipped squared value loss (coefficient 1), the team reward
    (EPyMARL sums the agents' rewards into one common reward), 10 env copies
    each stepped for one episode limit (50 steps on LBF, 500 on RWARE) per
    update, so a batch is 10 episodes, trained as whole sequences. Advantages
    are not normalized (EPyMARL does not; normalizing them per minibatch, the
    first mapping, turned the near-zero advantages of LBF's reward-free first
    100k steps into unit-sized noise that collapsed the policy's entropy from
    1.79 to 0.58 with no food found). No equivalent: its reward
    standardisation by running statistics (value normalization is the
    nearest, for the critic only); its 5-step returns from a target critic
    updated softly (tau 0.01), here GAE (lambda 0.95) from the critic itself;
    its separate actor and critic optimizers and gradient clips; PyTorch's
    default weight init. `env_kwargs` change nothing here.
    """
    module = env.removeprefix("gymnasium:").partition(":")[0]
    if not env.startswith("gymnasium:") or module not in EPYMARL_TIME_LIMITS:
        raise ConfigError(
            f"preset 'epymarl' covers the Gymnasium envs of "
            f"{', '.join(EPYMARL_TIME_LIMITS)} (gymnasium:<module>:<id>), not {env!r}"
        )
    episode = EPYMARL_TIME_LIMITS[module]
    return dict(
        env=env, lr=3e-4, adam_eps=1e-8, hidden_dim=128, activation="relu", recurrent=True,
        data_chunk_length=episode, share_policy=True, agent_id=True, ent_coef=0.001,
        update_epochs=4, clip_coef=0.2, minibatch_size=0, max_grad_norm=10.0, gamma=0.99,
        vf_coef=1.0, gae_lambda=0.95, critic="centralized", clip_value_loss=False, huber_delta=0.0,
        team_reward=True, value_norm=True, norm_adv=False, num_envs=10, rollout_steps=episode,
    )


JAXMARL_SMAX_ENVS = ("jaxmarl:HeuristicEnemySMAX", "jaxmarl:SMAX")
JAXMARL_SMAX_MAP = "2s3z"  # the config's MAP_NAME
JAXMARL_SMAX_ENV_KWARGS = {"see_enemy_actions": True, "walls_cause_death": True,
                           "attack_mode": "closest"}
JAXMARL_MINIBATCHES = 4  # NUM_MINIBATCHES


def jaxmarl_smax_preset(env: str, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """JaxMARL's MAPPO settings for SMAX: `baselines/MAPPO/config/mappo_homogenous_rnn_smax.yaml`
    and `baselines/MAPPO/mappo_rnn_smax.py` of FLAIROx/JaxMARL at commit c793d09 (the
    config unchanged since a9b91a7, 2024-04-02).

    LR 2e-3 annealed linearly to 0 (ANNEAL_LR), Adam eps 1e-5, 128 envs x 128 steps,
    10M env steps, 4 epochs of 4 minibatches (`minibatch_size` is a quarter of the
    rollout's agent-steps, so it follows the map's number of allies), gamma 0.99,
    GAE lambda 0.95, clip 0.2 (also the value clip), entropy 0, value coefficient
    0.5, gradient norm 0.25, ReLU, 128-wide layers and a GRU of 128 backpropagated
    through whole 128-step rollouts, one policy shared by the allies seeing no agent
    id, squared-error value loss without value normalization, the team reward
    credited to every ally until its env's episode ends, and the time limit ending an
    episode as a terminal state (GAE on the global done) with no time left in the critic's
    input. Env: HeuristicEnemySMAX
    on map 2s3z unless `env_kwargs` names another `scenario`.

    Not matched, for want of an equivalent: JaxMARL clips the actor's and the
    critic's gradient norms separately (mappo clips them together), orders its
    layers Dense-GRU-Dense where mappo has Dense-Dense-GRU, gives its critic the
    world state with an agent one-hot (mappo's critic reads the state once and
    outputs one value per agent), and trains on dead allies' samples, which mappo
    masks out of every loss.
    """
    if env == MappoConfig().env:  # --env not given: the preset's own env
        env = JAXMARL_SMAX_ENVS[0]
    if env not in JAXMARL_SMAX_ENVS:
        raise ConfigError(
            f"preset 'jaxmarl-smax' covers the envs {', '.join(JAXMARL_SMAX_ENVS)}, not {env!r}"
        )
    env_kwargs = {**JAXMARL_SMAX_ENV_KWARGS, "scenario": JAXMARL_SMAX_MAP, **(env_kwargs or {})}
    allies = smax_allies(env_kwargs["scenario"])
    num_envs, rollout_steps = 128, 128
    return dict(
        env=env, env_kwargs=env_kwargs, lr=2e-3, adam_eps=1e-5, anneal_lr=True,
        num_envs=num_envs, rollout_steps=rollout_steps, total_steps=10_000_000,
        update_epochs=4,
        minibatch_size=num_envs * rollout_steps * allies // JAXMARL_MINIBATCHES,
        gamma=0.99, gae_lambda=0.95, clip_coef=0.2, ent_coef=0.0, vf_coef=0.5,
        max_grad_norm=0.25, activation="relu", hidden_dim=128, recurrent=True,
        data_chunk_length=rollout_steps, agent_id=False, share_policy=True,
        value_norm=False, huber_delta=0.0, clip_value_loss=True, norm_adv=True,
        input_layer_norm=False, hidden_layer_norm=False, policy_head_gain=0.01,
        team_reward=True, bootstrap_time_limits=False, critic_time_left=False,
        use_global_state=True,
    )


def smax_allies(scenario: Any) -> int:
    """Number of allies (agents mappo controls) on the SMAX map `scenario` names."""
    if not isinstance(scenario, str):
        raise ConfigError(f"preset 'jaxmarl-smax': env_kwargs 'scenario' = {scenario!r} must "
                          "be an SMAX map name, e.g. '3m'")
    try:
        from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO
    except ModuleNotFoundError:
        raise ConfigError("preset 'jaxmarl-smax' trains JaxMARL's SMAX, which needs jax and "
                          "jaxmarl: pip install 'mappo[jax]'") from None
    if scenario not in MAP_NAME_TO_SCENARIO:
        raise ConfigError(f"preset 'jaxmarl-smax': no SMAX map {scenario!r}; maps: "
                          f"{', '.join(MAP_NAME_TO_SCENARIO)}")
    return int(MAP_NAME_TO_SCENARIO[scenario].num_allies)


PRESETS = {
    "paper-mpe": paper_mpe_preset,
    "benchmarl-vmas": benchmarl_vmas_preset,
    "epymarl": epymarl_preset,
    "jaxmarl-smax": jaxmarl_smax_preset,
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
        self.given = frozenset(names[: len(args)]) | frozenset(kwargs)
        generated(self, *args, **kwargs)

    cls.__init__ = init
    return cls


_record_given(MappoConfig)
FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(MappoConfig)}
ENV_DIM_FIELDS = ("num_agents", "obs_dim", "global_state_dim", "action_dim")
READ_OFF_ENV = "read_off_env"  # config.toml's table of ENV_DIM_FIELDS (facts, not settings)


def _coerce(name: str, value: Any) -> Any:
    """Check `value` against the field's declared type; convert only lossless cases."""
    kind = FIELDS[name].type
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
    return float(value) if kind == "float" else value


def from_dict(data: dict[str, Any], source: str = "config") -> MappoConfig:
    """Build a config from a mapping, refusing unknown keys with a suggestion."""
    check_keys(data, source)
    return MappoConfig(**{k: _coerce(k, v) for k, v in data.items()})


def check_keys(data: dict[str, Any], source: str) -> None:
    """Refuse keys that are not config fields, naming the source and the nearest field."""
    for key in data:
        if key not in FIELDS:
            near = difflib.get_close_matches(key, FIELDS, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"unknown config key {key!r} in {source}{hint}")


def validate(cfg: MappoConfig) -> None:
    """Raise `ConfigError` naming the first field whose value cannot work."""
    for name in FIELDS:
        _coerce(name, getattr(cfg, name))

    def need(cond: bool, name: str, allowed: str) -> None:
        if not cond:
            raise ConfigError(f"config key '{name}' = {getattr(cfg, name)!r}: must be {allowed}")

    for name in ("gamma", "gae_lambda"):
        need(0.0 <= getattr(cfg, name) <= 1.0, name, "in [0, 1]")
    need(cfg.minibatch_size >= 0, "minibatch_size", ">= 0 (0: the whole rollout at once)")
    for name in ("num_agents", "obs_dim", "global_state_dim", "action_dim", "update_epochs",
                 "total_steps", "num_envs", "rollout_steps", "hidden_dim",
                 "data_chunk_length"):
        need(getattr(cfg, name) >= 1, name, "an integer >= 1")
    for name in ("lr", "adam_eps", "max_grad_norm", "policy_head_gain"):
        need(getattr(cfg, name) > 0 and math.isfinite(getattr(cfg, name)), name, "> 0")
    for name in ("clip_coef", "vf_coef", "ent_coef", "huber_delta"):
        need(getattr(cfg, name) >= 0 and math.isfinite(getattr(cfg, name)), name, ">= 0")
    need(0.0 < cfg.value_norm_beta <= 1.0, "value_norm_beta", "in (0, 1]")
    need(cfg.torch_threads >= 0, "torch_threads", ">= 0")
    need(cfg.num_workers >= 0, "num_workers", ">= 0")
    need(cfg.checkpoint_interval > 0, "checkpoint_interval", "> 0 seconds")
    need(cfg.eval_interval >= 0, "eval_interval", ">= 0 env steps (0: no evaluation)")
    need(cfg.eval_episodes >= 1, "eval_episodes", "an integer >= 1")
    if cfg.num_workers and cfg.num_envs % cfg.num_workers:
        raise ConfigError(
            f"config key 'num_workers' = {cfg.num_workers}: num_envs = {cfg.num_envs} must be "
            "a multiple of it (every worker steps the same number of copies)"
        )
    for name, f in FIELDS.items():
        if "choices" in f.metadata:
            need(getattr(cfg, name) in f.metadata["choices"], name,
                 "one of " + ", ".join(f.metadata["choices"]))
    if cfg.policy_groups and not cfg.share_policy:
        raise ConfigError(
            f"config key 'policy_groups' = {cfg.policy_groups!r} shares one policy per prefix "
            "and needs share_policy = true; share_policy = false (set here or by a preset) "
            "asks for one policy per agent"
        )


def parse_cli_value(name: str, text: str) -> Any:
    """Turn one `--flag value` string into the field's type, or raise ConfigError."""
    kind = FIELDS[name].type
    if kind == "AutoBool" and text.lower() == AUTO:
        return AUTO
    try:
        if kind in ("bool", "AutoBool"):
            lowered = text.lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if kind == "int":
            return int(float(text)) if float(text).is_integer() else int(text)
        if kind == "float":
            return float(text)
        if kind == "dict":
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError
            return value
        return text
    except ValueError:
        raise ConfigError(f"config key '{name}' = {text!r}: expected "
                          f"{KIND_NAMES.get(kind, kind)}") from None
