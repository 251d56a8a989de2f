"""Named configs from published MAPPO code: each maps one codebase's settings for one suite
onto `MappoConfig` fields, with its source and what has no equivalent.

`mappo train --preset NAME` starts from one (a config file and flags win);
each function takes the `--env` and `--env-kwargs` given and returns the
fields to set, or refuses an env the preset does not cover.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mappo.config import ConfigError, MappoConfig, coerce_field, from_dict, read_config_file

PAPER_MPE_AGENTS = {"spread": 3, "reference": 2, "speaker_listener": 2}


def paper_mpe_preset(env: str | None, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
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
    env = env or MappoConfig().env  # --env not given: spread
    if env not in PAPER_MPE_AGENTS:
        raise ConfigError(
            f"preset 'paper-mpe' covers the envs {', '.join(PAPER_MPE_AGENTS)}, not {env!r}"
        )
    return dict(
        env=env,
        recurrent=True,
        data_chunk_length=10,
        hidden_dim=64,
        input_layer_norm=True,
        hidden_layer_norm=True,
        agent_id=False,
        bootstrap_time_limits=False,
        activation="tanh" if env == "spread" else "relu",
        lr=7e-4,
        adam_eps=1e-5,
        num_envs=128,
        rollout_steps=25,
        minibatch_size=0,  # the whole rollout in one minibatch
        update_epochs=10 if env == "spread" else 15,
        clip_coef=0.2,
        ent_coef=0.01,
        vf_coef=1.0,
        huber_delta=10.0,
        clip_value_loss=True,
        value_norm=True,
        value_norm_beta=0.99999,
        max_grad_norm=10.0,
        policy_head_gain=0.01,
        share_policy=env != "speaker_listener",
        gamma=0.99,
        gae_lambda=0.95,
        team_reward=True,
        critic_time_left=False,
    )


# BenchMARL 1.5.2's task settings for VMAS (benchmarl/conf/task/vmas/<scenario>.yaml), for the
# scenarios of its VMAS benchmark: passed to the scenario as env_kwargs.
BENCHMARL_VMAS_TASKS: dict[str, dict[str, Any]] = {
    "balance": {
        "max_steps": 100,
        "n_agents": 4,
        "random_package_pos_on_line": True,
        "package_mass": 5,
    },
    "navigation": {
        "max_steps": 100,
        "n_agents": 3,
        "collisions": True,
        "agents_with_same_goal": 1,
        "split_goals": False,
        "observe_all_goals": False,
        "shared_rew": False,
        "lidar_range": 0.35,
        "agent_radius": 0.1,
    },
    "sampling": {
        "max_steps": 100,
        "n_agents": 3,
        "shared_rew": False,
        "n_gaussians": 3,
        "lidar_range": 0.2,
        "cov": 0.05,
        "collisions": True,
        "spawn_same_pos": False,
    },
    "transport": {
        "max_steps": 100,
        "n_agents": 4,
        "n_packages": 1,
        "package_width": 0.15,
        "package_length": 0.15,
        "package_mass": 50,
    },
    "wheel": {
        "max_steps": 100,
        "n_agents": 4,
        "line_length": 1,
        "line_mass": 30,
        "desired_velocity": 0.05,
    },
}
BENCHMARL_VMAS_MINIBATCH_FRAMES = 4096  # env steps per minibatch (`on_policy_minibatch_size`)


def benchmarl_vmas_preset(
    env: str | None, env_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
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
    scenario = (env or "").removeprefix("vmas:")
    if env is None or not env.startswith("vmas:") or scenario not in BENCHMARL_VMAS_TASKS:
        raise ConfigError(
            f"preset 'benchmarl-vmas' covers the envs "
            f"{', '.join('vmas:' + name for name in BENCHMARL_VMAS_TASKS)}{_not(env)}"
        )
    task = {**BENCHMARL_VMAS_TASKS[scenario], **(env_kwargs or {})}
    return dict(
        env=env,
        env_kwargs=task,
        num_envs=600,
        rollout_steps=100,
        update_epochs=45,
        minibatch_size=BENCHMARL_VMAS_MINIBATCH_FRAMES
        * _count_in("benchmarl-vmas", task, "n_agents", "sets the minibatch"),
        total_steps=10_000_000,
        lr=5e-5,
        adam_eps=1e-6,
        gamma=0.9,
        gae_lambda=0.9,
        clip_coef=0.2,
        ent_coef=0.0,
        vf_coef=2.0,
        huber_delta=0.0,
        max_grad_norm=5.0,
        norm_adv=False,
        value_norm=False,
        clip_value_loss=False,
        hidden_dim=256,
        activation="tanh",
        share_policy=True,
        agent_id=False,
        recurrent=False,
        bootstrap_time_limits=True,
        eval_interval=120_000,
        eval_episodes=200,
    )


# EPyMARL's episode limits (`env_args.time_limit`) for the benchmark paper's Gymnasium envs,
# by the module that registers them (`gymnasium:<module>:<id>`), and for Jumanji's versions of
# the same tasks (`jumanji:<id>`, whose `time_limit` the preset sets).
EPYMARL_TIME_LIMITS = {"lbforaging": 50, "rware": 500}
EPYMARL_JUMANJI_TIME_LIMITS = {"LevelBasedForaging-v0": 50, "RobotWarehouse-v0": 500}


def epymarl_preset(env: str | None, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """EPyMARL's MAPPO settings (its `src/config/algs/mappo.yaml`) for an LBF or RWARE env.

    Mapped: lr 3e-4 (Adam, torch's eps 1e-8), hidden 128 with ReLU and a GRU in the actor
    (`use_rnn`; its critic, `cv_critic`, is an MLP on the state, so `critic_recurrent` is
    false), an agent one-hot for the shared policy, entropy 0.001, 4 epochs over the whole
    batch (one minibatch), clip 0.2, gradient norm 10, gamma 0.99, a centralized critic with
    an unclipped squared value loss (coefficient 1), the team reward (EPyMARL sums the
    agents' rewards into one common reward; here their mean, the same once scaled), 10 env
    copies each stepped for one episode limit (50 steps on LBF, 500 on RWARE) per update, so
    a batch is 10 episodes, trained as whole sequences. Rewards are divided by their running
    root mean square (`reward_norm`; its `standardise_rewards` divides by their std, the
    same for sparse rewards, after subtracting their mean, which would make every step cost
    and so pay for ending episodes early; see `mappo.reward_norm`) and the critic learns
    those returns as they are (no value normalization: its `standardise_returns` is off).
    Advantages are not normalized (EPyMARL does not; normalizing them per minibatch, the
    first mapping, turned the near-zero advantages of LBF's reward-free first 100k steps
    into unit-sized noise that collapsed the policy's entropy from 1.79 to 0.58 with no food
    found). No equivalent: its 5-step returns from a target critic updated softly (tau
    0.01), here GAE (lambda 0.95) from the critic itself; its separate actor and critic
    optimizers and gradient clips; PyTorch's default weight init; its agent's one hidden
    layer before the GRU (here two, as every actor of this library and the official MAPPO
    code's). Jumanji's LBF and RWARE (`jumanji:LevelBasedForaging-v0`,
    `jumanji:RobotWarehouse-v0`) get the same settings, with EPyMARL's time limit as their
    `time_limit` unless `env_kwargs` set one.
    """
    given = env or ""
    module = given.removeprefix("gymnasium:").partition(":")[0]
    jumanji_id = given.removeprefix("jumanji:")
    extra: dict[str, Any] = {}
    if given.startswith("gymnasium:") and module in EPYMARL_TIME_LIMITS:
        episode = EPYMARL_TIME_LIMITS[module]
    elif given.startswith("jumanji:") and jumanji_id in EPYMARL_JUMANJI_TIME_LIMITS:
        extra["env_kwargs"] = {
            "time_limit": EPYMARL_JUMANJI_TIME_LIMITS[jumanji_id],
            **(env_kwargs or {}),
        }
        # A rollout is one episode.
        episode = _count_in("epymarl", extra["env_kwargs"], "time_limit", "sets the rollout")
    else:
        raise ConfigError(
            f"preset 'epymarl' covers the Gymnasium envs of "
            f"{', '.join(EPYMARL_TIME_LIMITS)} (gymnasium:<module>:<id>) and "
            f"{', '.join('jumanji:' + n for n in EPYMARL_JUMANJI_TIME_LIMITS)}{_not(env)}"
        )
    return dict(
        **extra,
        env=env,
        lr=3e-4,
        adam_eps=1e-8,
        hidden_dim=128,
        activation="relu",
        recurrent=True,
        critic_recurrent=False,
        data_chunk_length=episode,
        share_policy=True,
        agent_id=True,
        ent_coef=0.001,
        update_epochs=4,
        clip_coef=0.2,
        minibatch_size=0,
        max_grad_norm=10.0,
        gamma=0.99,
        vf_coef=1.0,
        gae_lambda=0.95,
        critic="centralized",
        clip_value_loss=False,
        huber_delta=0.0,
        team_reward=True,
        reward_norm=True,
        value_norm=False,
        norm_adv=False,
        num_envs=10,
        rollout_steps=episode,
    )


JAXMARL_SMAX_ENV = "jaxmarl:HeuristicEnemySMAX"  # the config's ENV_NAME
JAXMARL_SMAX_MAP = "2s3z"  # the config's MAP_NAME
JAXMARL_SMAX_ENV_KWARGS = {
    "see_enemy_actions": True,
    "walls_cause_death": True,
    "attack_mode": "closest",
}
JAXMARL_MINIBATCHES = 4  # NUM_MINIBATCHES


def jaxmarl_smax_preset(
    env: str | None, env_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
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
    env = env or JAXMARL_SMAX_ENV  # --env not given: the preset's own env
    if env != JAXMARL_SMAX_ENV:
        # Plain jaxmarl:SMAX makes both sides agents: the team reward would mix the sides.
        raise ConfigError(
            f"preset 'jaxmarl-smax' covers {JAXMARL_SMAX_ENV} (the allies against the "
            f"heuristic enemy, as JaxMARL's MAPPO trains), not {env!r}"
        )
    env_kwargs = {**JAXMARL_SMAX_ENV_KWARGS, "scenario": JAXMARL_SMAX_MAP, **(env_kwargs or {})}
    allies = smax_allies(env_kwargs["scenario"])
    num_envs, rollout_steps = 128, 128
    return dict(
        env=env,
        env_kwargs=env_kwargs,
        lr=2e-3,
        adam_eps=1e-5,
        anneal_lr=True,
        num_envs=num_envs,
        rollout_steps=rollout_steps,
        total_steps=10_000_000,
        update_epochs=4,
        minibatch_size=num_envs * rollout_steps * allies // JAXMARL_MINIBATCHES,
        gamma=0.99,
        gae_lambda=0.95,
        clip_coef=0.2,
        ent_coef=0.0,
        vf_coef=0.5,
        max_grad_norm=0.25,
        activation="relu",
        hidden_dim=128,
        recurrent=True,
        data_chunk_length=rollout_steps,
        agent_id=False,
        share_policy=True,
        value_norm=False,
        huber_delta=0.0,
        clip_value_loss=True,
        norm_adv=True,
        input_layer_norm=False,
        hidden_layer_norm=False,
        policy_head_gain=0.01,
        team_reward=True,
        bootstrap_time_limits=False,
        critic_time_left=False,
        use_global_state=True,
    )


def smax_allies(scenario: Any) -> int:
    """Number of allies (agents mappo controls) on the SMAX map `scenario` names."""
    if not isinstance(scenario, str):
        raise ConfigError(
            f"preset 'jaxmarl-smax': env_kwargs 'scenario' = {scenario!r} must "
            "be an SMAX map name, e.g. '3m'"
        )
    import mappo.envs.jaxmarl  # noqa: F401  (imports JaxMARL without its import's prints)

    try:
        from jaxmarl.environments.smax.smax_env import MAP_NAME_TO_SCENARIO
    except ModuleNotFoundError:
        raise ConfigError(
            "preset 'jaxmarl-smax' trains JaxMARL's SMAX, which needs jax and "
            "jaxmarl: pip install 'mappo[jax]'"
        ) from None
    if scenario not in MAP_NAME_TO_SCENARIO:
        raise ConfigError(
            f"preset 'jaxmarl-smax': no SMAX map {scenario!r}; maps: "
            f"{', '.join(MAP_NAME_TO_SCENARIO)}"
        )
    return int(MAP_NAME_TO_SCENARIO[scenario].num_allies)


PRESETS = {
    "paper-mpe": paper_mpe_preset,
    "benchmarl-vmas": benchmarl_vmas_preset,
    "epymarl": epymarl_preset,
    "jaxmarl-smax": jaxmarl_smax_preset,
}


def _not(env: str | None) -> str:
    """The end of a preset's refusal of `env` (None: no --env given)."""
    return f", not {env!r}" if env is not None else "; give one with --env"


def _count_in(preset: str, env_kwargs: dict[str, Any], key: str, use: str) -> int:
    """`env_kwargs[key]`, which the preset reads as a count (`use`: what it sets with it),
    refused in one line unless an integer >= 1: a string would repeat, None would fail."""
    value = env_kwargs[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(
            f"preset {preset!r}: env_kwargs '{key}' = {value!r} must be an integer >= 1 "
            f"(the preset {use} from it)"
        )
    return value


def build_config(
    preset: str | None = None,
    config_file: str | Path | None = None,
    fields: dict[str, Any] | None = None,
    source: str = "command line",
) -> MappoConfig:
    """A new run's config: the preset's fields, then the TOML file's, then `fields` on top.

    A preset's `env_kwargs` are the task's settings with the user's already on
    top, so they stand. `config.given` records the file's choices and `fields`'
    names only: a preset's values are a bundle, not the user's choices, so none of
    them is warned about as having no effect.
    """
    fields = fields or {}
    from_file, chosen, _ = read_config_file(config_file) if config_file else ({}, frozenset(), {})
    env = fields.get("env", from_file.get("env"))  # None: not given, the preset decides
    env_kwargs = fields.get("env_kwargs", from_file.get("env_kwargs"))
    if preset is not None and preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; the presets: {', '.join(sorted(PRESETS))}")
    if preset is not None:  # the preset reads both: of their types first, as the config's
        env = None if env is None else coerce_field("env", env)
        env_kwargs = None if env_kwargs is None else coerce_field("env_kwargs", env_kwargs)
    bundle = PRESETS[preset](env, env_kwargs) if preset else {}
    merged = {**bundle, **from_file, **fields}
    if "env_kwargs" in bundle:
        merged["env_kwargs"] = bundle["env_kwargs"]
    config = from_dict(merged, source=source)
    config.given = chosen | frozenset(fields)
    return config
