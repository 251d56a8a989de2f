"""mappo vs BenchMARL's MAPPO on simple_spread and on VMAS, and mappo on JaxMARL's MPE config.

    python benchmarks/compare.py [--quick] [--iterations N]
    python benchmarks/compare.py --only-vmas [--vmas-iterations N]

Training frames/s (env steps collected and trained on per second: env steps
of one iteration / the median seconds of collection plus update, over the
timed iterations after one warm-up) of, one after the other in this run:

1. mappo on its built-in `spread` (MPE simple_spread N=3, equal to mpe2
   `simple_spread_v3` step for step; vectorized in torch) - the headline
   `frames_per_second`;
2. mappo on mpe2 `simple_spread_v3` itself through its PettingZoo wrapper
   (`env="mpe2.simple_spread_v3:parallel_env"`, envs stepped in-process), the
   same simulator BenchMARL steps;
3. BenchMARL's MAPPO on PettingZoo `simple_spread_v3` from mpe2 (torchrl's
   PettingZooEnv in a SerialEnv). PettingZoo 1.27 dropped `pettingzoo.mpe`
   and torchrl only looks there, so `register_mpe2_with_torchrl()` points
   torchrl's task table at mpe2's modules (a shim in this script only);
4. mappo on JaxMARL's published MPE MAPPO config (16 envs x 128 steps, 4
   epochs x 4 minibatches, lr 2e-3, max_grad_norm 0.5, a GRU of 128 after
   128-wide layers; every core, as XLA): trained as MAPPO trains recurrent
   policies, backpropagating through chunks of 10 steps from stored hidden
   states (`jaxmarl_config_frames_per_second`), and through whole 128-step
   sequences as JaxMARL does (`jaxmarl_config_whole_sequences_frames_per_second`).

mappo and BenchMARL share the batch (128 envs x 25 steps = 3200 env steps per
update, 25-step episodes), 4 epochs x 4 minibatches (mappo: 2400 agent-steps;
BenchMARL: 800 env steps), two hidden layers of 64 with
tanh for actor and critic, one shared policy, a centralized critic on the
global state, lr 7e-4, Adam eps 1e-5, gamma 0.99, GAE lambda 0.95, clip 0.2,
entropy 0.01, value coefficient 0.5, grad-norm clip 10, 1 torch thread.
mappo uses its defaults otherwise (its minibatch loss is compiled, as
`compile=auto` does for the default 1.5M-step budget; value normalization);
BenchMARL uses its own (no compile). `vs_benchmarl` = (1) / (3);
`vs_benchmarl_same_env` = (2) / (3). Returns are the mean per-agent episode
return of the episodes that ended in the last timed iteration (both libraries
define it so); after a handful of iterations they only show that learning
runs.

VMAS section (also alone with `--only-vmas`, which rewrites only that section
of compare.md): BenchMARL's MAPPO and mappo on the same VMAS scenario
(`navigation`, BenchMARL's task settings: 3 agents, 100-step episodes), the same
simulator (VMAS on CPU, continuous actions; BenchMARL through torchrl's VmasEnv,
mappo through `vmas:navigation`), BenchMARL's default experiment: 10 envs x 600
steps = 6000 frames per iteration, 45 epochs x 15 minibatches of 400 frames
(mappo: 1200 agent-steps), actor and critic MLP 256x256 tanh, shared policy, a
critic on all observations, lr 5e-5, Adam eps 1e-6, gamma 0.99, lambda 0.9,
clip 0.2, entropy 0, squared-error value loss (critic coefficient 1: mappo's
vf_coef 2 on its halved loss), grad-norm clip 5, no advantage or value
normalization, no value clipping (mappo: `--preset benchmarl-vmas` with these
batch settings). Both run the same number of iterations; the return each
reaches is the mean per-agent return of the episodes ended in its last
iteration, at equal frames. `vs_benchmarl_vmas` = mappo / BenchMARL frames/s.

Last line: one JSON object; the table goes to `benchmarks/results/compare.md`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import tempfile
import time
import traceback

import torch
from bench_common import (
    RESULTS_DIR,
    command_line,
    machine_info,
    machine_line,
    markdown_table,
    median,
    write_results,
)

from mappo import MappoConfig, MappoTrainer
from mappo.presets import benchmarl_vmas_preset

NUM_ENVS = 128
ROLLOUT_STEPS = 25
EPOCHS = 4
MINIBATCHES = 4
MAPPO_MINIBATCH = NUM_ENVS * ROLLOUT_STEPS * 3 // MINIBATCHES  # agent-steps
BENCHMARL_MINIBATCH = NUM_ENVS * ROLLOUT_STEPS // MINIBATCHES  # env steps
HIDDEN = 64
SHARED = {
    "lr": 7e-4,
    "adam_eps": 1e-5,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "clip_coef": 0.2,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
    "max_grad_norm": 10.0,
}


def mappo_config(**changes: object) -> MappoConfig:
    """The compared config: default budget (so compile=auto compiles), shared settings."""
    return MappoConfig(
        num_envs=NUM_ENVS,
        rollout_steps=ROLLOUT_STEPS,
        update_epochs=EPOCHS,
        minibatch_size=MAPPO_MINIBATCH,
        hidden_dim=HIDDEN,
        activation="tanh",
        torch_threads=1,
        seed=0,
        **SHARED,
    ).replace(**changes)


def iteration_figures(frames: int, collect: list[float], update: list[float]) -> dict:
    """Frames/s from the median iteration (robust to load spikes on a shared machine)."""
    iteration = [c + u for c, u in zip(collect, update, strict=True)]
    return {
        "frames_per_second": frames / median(iteration),
        "collect_s_per_iteration": median(collect),
        "update_s_per_iteration": median(update),
        "iteration_s": [round(x, 4) for x in iteration],
    }


def run_mappo(config: MappoConfig, iterations: int) -> dict:
    """Frames/s over `iterations` timed collect + update after one warm-up; returns reached."""
    trainer = MappoTrainer(config)
    start = time.perf_counter()
    trainer.collect_rollout()
    first = trainer.update()
    warmup_s = time.perf_counter() - start
    collect, update = [], []
    returns = [first.episode_return]
    for _ in range(iterations):
        t0 = time.perf_counter()
        trainer.collect_rollout()
        t1 = time.perf_counter()
        metrics = trainer.update()
        collect.append(t1 - t0)
        update.append(time.perf_counter() - t1)
        returns.append(metrics.episode_return)
    finite = [r for r in returns if math.isfinite(r)]
    cfg = trainer.config
    return {
        **iteration_figures(cfg.num_envs * cfg.rollout_steps, collect, update),
        "first_return": finite[0] if finite else None,
        "return": finite[-1] if finite else None,
        "env_steps": trainer.env_steps,
        "warmup_s": warmup_s,
        "compiled": trainer.compiled,
        "minibatches": max(
            1, round(cfg.num_envs * cfg.rollout_steps * cfg.num_agents / cfg.minibatch_size)
        ),
    }


try:  # BenchMARL pickles its callbacks, so the class must live at module level
    from benchmarl.experiment import Callback as _BenchmarlCallback
except ImportError:  # run_benchmarl reports the missing package
    _BenchmarlCallback = object


class BenchmarlStamps(_BenchmarlCallback):
    """perf_counter stamps after each collection and after each training phase."""

    def __init__(self) -> None:
        super().__init__()
        self.collected: list[float] = []
        self.trained: list[float] = []
        self.returns: list[float] = []

    def on_batch_collected(self, batch: object) -> None:
        self.collected.append(time.perf_counter())
        self.returns.append(float(self.experiment.mean_return))

    def on_train_end(self, training_td: object, group: str) -> None:
        self.trained.append(time.perf_counter())


def register_mpe2_with_torchrl() -> None:
    """Let torchrl's PettingZooEnv find mpe2's tasks.

    torchrl looks tasks up in `pettingzoo.utils.all_modules` (which fails
    here: the Atari envs need a missing module) and then in
    `pettingzoo.mpe`, which PettingZoo 1.27 replaced by an ImportError
    pointing at mpe2. Its fallback table is swapped for mpe2's, whose module
    names (`mpe2.simple_spread_v3`) end in the task names BenchMARL asks for.
    """
    import torchrl.envs.libs.pettingzoo as torchrl_pettingzoo
    from mpe2.all_modules import mpe_environments

    torchrl_pettingzoo._load_available_envs = lambda: dict(mpe_environments)


def run_benchmarl_experiment(
    experiment_kwargs: dict, iterations: int, frames: int, minibatches: int
) -> dict:
    """Run one BenchMARL `Experiment(**experiment_kwargs)` (seed 0) and time its
    iterations; `frames` env steps per iteration."""
    from benchmarl.experiment import Experiment

    stamps = BenchmarlStamps()
    start = time.perf_counter()
    experiment = Experiment(**experiment_kwargs, seed=0, callbacks=[stamps])
    setup_s = time.perf_counter() - start
    experiment.run()
    # Iteration i >= 1: collection from the end of training i-1 to batch i, then training i.
    collect = [stamps.collected[i] - stamps.trained[i - 1] for i in range(1, iterations + 1)]
    train = [stamps.trained[i] - stamps.collected[i] for i in range(1, iterations + 1)]
    finite = [r for r in stamps.returns if math.isfinite(r)]
    return {
        **iteration_figures(frames, collect, train),
        "first_return": finite[0] if finite else None,
        "return": finite[-1] if finite else None,
        "env_steps": len(stamps.collected) * frames,
        "warmup_s": setup_s + (stamps.trained[0] - start if stamps.trained else 0.0),
        "compiled": False,
        "minibatches": minibatches,
    }


def run_benchmarl(iterations: int) -> dict:
    """BenchMARL MAPPO on mpe2 simple_spread_v3: frames/s after one warm-up iteration."""
    register_mpe2_with_torchrl()
    from benchmarl.algorithms import MappoConfig as BenchmarlMappoConfig
    from benchmarl.environments import PettingZooTask
    from benchmarl.experiment import ExperimentConfig
    from benchmarl.models.mlp import MlpConfig

    task = PettingZooTask.SIMPLE_SPREAD.get_from_yaml()
    task.config.update({"max_cycles": ROLLOUT_STEPS, "N": 3, "local_ratio": 0.5})
    experiment_config = ExperimentConfig.get_from_yaml()
    for key, value in {
        "sampling_device": "cpu",
        "train_device": "cpu",
        "buffer_device": "cpu",
        "share_policy_params": True,
        "prefer_continuous_actions": False,
        "gamma": SHARED["gamma"],
        "lr": SHARED["lr"],
        "adam_eps": SHARED["adam_eps"],
        "clip_grad_norm": True,
        "clip_grad_val": SHARED["max_grad_norm"],
        "max_n_iters": iterations + 1,
        "max_n_frames": None,
        "on_policy_collected_frames_per_batch": NUM_ENVS * ROLLOUT_STEPS,
        "on_policy_n_envs_per_worker": NUM_ENVS,
        "on_policy_n_minibatch_iters": EPOCHS,
        "on_policy_minibatch_size": BENCHMARL_MINIBATCH,
        "evaluation": False,
        "render": False,
        "loggers": [],
        "create_json": False,
        "checkpoint_interval": 0,
        "checkpoint_at_end": False,
        "save_folder": tempfile.mkdtemp(prefix="benchmarl-compare-"),
    }.items():
        setattr(experiment_config, key, value)
    algorithm_config = BenchmarlMappoConfig.get_from_yaml()
    algorithm_config.share_param_critic = True
    algorithm_config.clip_epsilon = SHARED["clip_coef"]
    algorithm_config.entropy_coef = SHARED["ent_coef"]
    algorithm_config.critic_coef = SHARED["vf_coef"]
    algorithm_config.lmbda = SHARED["gae_lambda"]
    model_config = MlpConfig.get_from_yaml()
    model_config.num_cells = [HIDDEN, HIDDEN]
    model_config.activation_class = torch.nn.Tanh

    import benchmarl

    figures = run_benchmarl_experiment(
        dict(
            task=task,
            algorithm_config=algorithm_config,
            model_config=model_config,
            critic_model_config=model_config,
            config=experiment_config,
        ),
        iterations,
        NUM_ENVS * ROLLOUT_STEPS,
        -(-NUM_ENVS * ROLLOUT_STEPS // BENCHMARL_MINIBATCH),
    )
    return {**figures, "version": getattr(benchmarl, "__version__", "?")}


# BenchMARL's default experiment (benchmarl/conf/experiment/base_experiment.yaml) on VMAS.
VMAS_SCENARIO = "navigation"
VMAS_AGENTS = 3  # BenchMARL's navigation task
VMAS_NUM_ENVS = 10
VMAS_FRAMES = 6000  # per iteration: 600 steps of each env
VMAS_EPOCHS = 45
VMAS_MINIBATCH_FRAMES = 400
VMAS_MINIBATCHES = -(-VMAS_FRAMES // VMAS_MINIBATCH_FRAMES)  # 15
VMAS_GAMMA = 0.99  # the default experiment's (the fine-tuned VMAS config's is 0.9)
VMAS_SECTION = "## VMAS: BenchMARL's MAPPO and mappo on the same simulator"


def vmas_mappo_config() -> MappoConfig:
    """`--preset benchmarl-vmas` on navigation with BenchMARL's default batch settings."""
    preset = benchmarl_vmas_preset(f"vmas:{VMAS_SCENARIO}")
    preset.update(
        num_envs=VMAS_NUM_ENVS,
        rollout_steps=VMAS_FRAMES // VMAS_NUM_ENVS,
        update_epochs=VMAS_EPOCHS,
        minibatch_size=VMAS_MINIBATCH_FRAMES * VMAS_AGENTS,
        gamma=VMAS_GAMMA,
        eval_interval=0,
        torch_threads=1,
        seed=0,
    )
    assert preset["env_kwargs"]["n_agents"] == VMAS_AGENTS
    return MappoConfig(**preset)


def run_benchmarl_vmas(iterations: int) -> dict:
    """BenchMARL MAPPO on VMAS navigation, its defaults: frames/s after one warm-up."""
    from benchmarl.algorithms import MappoConfig as BenchmarlMappoConfig
    from benchmarl.environments import VmasTask
    from benchmarl.experiment import ExperimentConfig
    from benchmarl.models.mlp import MlpConfig

    task = getattr(VmasTask, VMAS_SCENARIO.upper()).get_from_yaml()
    mappo = vmas_mappo_config()
    assert task.config["n_agents"] == VMAS_AGENTS
    assert task.config["max_steps"] == mappo.env_kwargs["max_steps"]
    experiment_config = ExperimentConfig.get_from_yaml()  # BenchMARL's defaults, checked:
    for key, value in {
        "on_policy_collected_frames_per_batch": VMAS_FRAMES,
        "on_policy_n_envs_per_worker": VMAS_NUM_ENVS,
        "on_policy_n_minibatch_iters": VMAS_EPOCHS,
        "on_policy_minibatch_size": VMAS_MINIBATCH_FRAMES,
        "gamma": mappo.gamma,
        "lr": mappo.lr,
        "adam_eps": mappo.adam_eps,
        "clip_grad_norm": True,
        "clip_grad_val": mappo.max_grad_norm,
        "share_policy_params": True,
        "prefer_continuous_actions": True,
    }.items():
        assert getattr(experiment_config, key) == value, (key, getattr(experiment_config, key))
    for key, value in {
        "sampling_device": "cpu",
        "train_device": "cpu",
        "buffer_device": "cpu",
        "max_n_iters": iterations + 1,
        "max_n_frames": None,
        "evaluation": False,
        "render": False,
        "loggers": [],
        "create_json": False,
        "checkpoint_interval": 0,
        "checkpoint_at_end": False,
        "save_folder": tempfile.mkdtemp(prefix="benchmarl-compare-vmas-"),
    }.items():
        setattr(experiment_config, key, value)
    algorithm_config = BenchmarlMappoConfig.get_from_yaml()
    assert (
        algorithm_config.lmbda,
        algorithm_config.clip_epsilon,
        algorithm_config.entropy_coef,
        algorithm_config.critic_coef,
        algorithm_config.loss_critic_type,
    ) == (mappo.gae_lambda, mappo.clip_coef, mappo.ent_coef, mappo.vf_coef / 2, "l2")
    model_config = MlpConfig.get_from_yaml()
    assert list(model_config.num_cells) == [mappo.hidden_dim] * 2
    assert model_config.activation_class is torch.nn.Tanh

    import benchmarl
    import vmas

    figures = run_benchmarl_experiment(
        dict(
            task=task,
            algorithm_config=algorithm_config,
            model_config=model_config,
            critic_model_config=model_config,
            config=experiment_config,
        ),
        iterations,
        VMAS_FRAMES,
        VMAS_MINIBATCHES,
    )
    return {**figures, "version": f"BenchMARL {benchmarl.__version__}, VMAS {vmas.__version__}"}


def run_vmas_comparison(iterations: int, info: dict) -> tuple[dict, str]:
    """mappo then BenchMARL on VMAS navigation: (figures, markdown section); `info` is the
    machine at the start of the run."""
    load_start = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    labels = {
        "mappo": f"mappo, vmas:{VMAS_SCENARIO} (`--preset benchmarl-vmas`, "
        "BenchMARL's default batch)",
        "benchmarl": f"BenchMARL MAPPO, VMAS {VMAS_SCENARIO} (torchrl VmasEnv)",
    }
    runs: dict[str, dict | None] = {"mappo": run_mappo(vmas_mappo_config(), iterations)}
    status = "ran"
    try:
        runs["benchmarl"] = run_benchmarl_vmas(iterations)
        status = runs["benchmarl"]["version"]
    except Exception as err:  # keep the mappo half whatever BenchMARL does
        runs["benchmarl"] = None
        status = f"unavailable: {type(err).__name__}: {err}"
        traceback.print_exc()
    for key, r in runs.items():
        if r is not None:
            print(
                f"{labels[key]}: {r['frames_per_second']:,.0f} frames/s (collect "
                f"{r['collect_s_per_iteration']:.2f} s + update "
                f"{r['update_s_per_iteration']:.2f} s per iteration), return "
                f"{r['return']} after {r['env_steps']:,} frames"
            )
    bench = runs["benchmarl"]
    ratio = runs["mappo"]["frames_per_second"] / bench["frames_per_second"] if bench else None
    rows = []
    for key, label in labels.items():
        r = runs[key]
        rows.append(
            [label, *(None,) * 7]
            if r is None
            else [
                label,
                r["frames_per_second"],
                r["collect_s_per_iteration"],
                r["update_s_per_iteration"],
                r["minibatches"],
                r["compiled"],
                r["return"],
                r["env_steps"],
            ]
        )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    summary = (
        f"`vs_benchmarl_vmas` = {ratio:.2f} (mappo / BenchMARL frames/s; goal >= 20)."
        if ratio is not None
        else f"`vs_benchmarl_vmas` = null: BenchMARL {status}."
    )
    section = "\n".join(
        [
            VMAS_SECTION,
            "",
            f"Command `{command_line()}`, {info['date_utc']}; machine {info['cores']} cores "
            f"({info['cpu']}), Python {info['python']}; load average (1/5/15 min, `uptime`) "
            f"{load_start} at the start of this section, {load} at its end; {status}.",
            "",
            f"Same simulator and scenario (VMAS `{VMAS_SCENARIO}`, 3 agents, 100-step episodes, "
            "continuous actions, CPU), BenchMARL's default experiment for both: "
            f"{VMAS_NUM_ENVS} envs x {VMAS_FRAMES // VMAS_NUM_ENVS} steps = {VMAS_FRAMES} "
            f"frames per iteration, {VMAS_EPOCHS} epochs x {VMAS_MINIBATCHES} minibatches of "
            f"{VMAS_MINIBATCH_FRAMES} frames, MLP 256x256 tanh for actor and critic, shared "
            "policy, critic on all observations, lr 5e-5, gamma 0.99, lambda 0.9, clip 0.2, no "
            "entropy, squared-error value loss, grad-norm clip 5, no advantage or value "
            "normalization, 1 torch thread. Frames/s from the median of "
            f"{iterations} timed iterations after 1 warm-up; return = mean per-agent return of "
            "the episodes ended in the last iteration, both after the same frames. What still "
            "differs: BenchMARL's tanh-squashed Gaussian with a state-dependent scale against "
            "mappo's Gaussian with a learned log-std clipped to the box; one value for all agents "
            "against one per agent; two optimizers against one (see `benchmarl_vmas_preset`); "
            "mappo's minibatch rows are agent-steps, so its critic runs on 3 rows per frame where "
            "BenchMARL's runs on 1. Both halves step the same VMAS, whose step is most of the "
            "collection time, and train the same network sizes on the same samples: the ratio "
            "is bounded by that shared work.",
            "",
            summary,
            "",
            markdown_table(
                [
                    "run",
                    "frames/s",
                    "collect s/iter",
                    "update s/iter",
                    "minibatches/epoch",
                    "compiled",
                    "return reached",
                    "frames",
                ],
                rows,
            ),
        ]
    )
    figures = {
        "vmas_mappo_frames_per_second": runs["mappo"]["frames_per_second"],
        "vmas_benchmarl_frames_per_second": bench["frames_per_second"] if bench else None,
        "vs_benchmarl_vmas": ratio,
        "vmas_mappo_return": runs["mappo"]["return"],
        "vmas_benchmarl_return": bench["return"] if bench else None,
        "vmas_frames_each": runs["mappo"]["env_steps"],
        "vmas_benchmarl_status": status,
    }
    return figures, section


def replace_section(path, heading: str, section: str) -> None:
    """Put `section` (starting with `heading`) into the markdown file in place of the old
    one, or at its end."""
    text = path.read_text() if path.is_file() else ""
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip() + "\n\n", text).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 timed iterations per run")
    parser.add_argument(
        "--iterations", type=int, default=None, help="timed iterations per run (after one warm-up)"
    )
    parser.add_argument(
        "--only-vmas",
        action="store_true",
        help="run only the VMAS comparison and rewrite its section",
    )
    parser.add_argument(
        "--vmas-iterations",
        type=int,
        default=None,
        help="timed iterations of the VMAS comparison (default 4; --quick 1)",
    )
    args = parser.parse_args()
    iterations = args.iterations or (2 if args.quick else 20)
    vmas_iterations = args.vmas_iterations or (1 if args.quick else 4)
    torch.set_num_threads(1)
    info = machine_info()
    print(machine_line(info))
    if args.only_vmas:
        figures, section = run_vmas_comparison(vmas_iterations, info)
        replace_section(RESULTS_DIR / "compare.md", VMAS_SECTION, section)
        print(json.dumps({**figures, "load_average_start": info["load_average"][0]}))
        return
    print(
        f"batch {NUM_ENVS} envs x {ROLLOUT_STEPS} steps, {EPOCHS} epochs x {MINIBATCHES} "
        f"minibatches, MLP {HIDDEN}x{HIDDEN} tanh, 1 thread; 1 warm-up + {iterations} "
        "timed iterations each"
    )

    runs: dict[str, dict | None] = {}
    labels = {
        "mappo": "mappo, built-in spread (torch-vectorized)",
        "mappo_mpe2": "mappo, mpe2 simple_spread_v3 (PettingZoo wrapper)",
        "benchmarl": "BenchMARL MAPPO, mpe2 simple_spread_v3 (PettingZoo via torchrl)",
        "jaxmarl_config": "mappo, JaxMARL MPE MAPPO config (GRU 128), BPTT chunks of 10",
        "jaxmarl_config_whole_sequences": (
            "mappo, JaxMARL MPE MAPPO config (GRU 128), BPTT over whole 128-step sequences"
        ),
    }

    def show(key: str) -> None:
        r = runs[key]
        ret = "n/a" if r["return"] is None else f"{r['return']:.2f}"
        print(
            f"{labels[key]}: {r['frames_per_second']:,.0f} frames/s "
            f"(collect {r['collect_s_per_iteration']:.3f} s + update "
            f"{r['update_s_per_iteration']:.3f} s per iteration, {r['minibatches']} "
            f"minibatches/epoch, compiled={r['compiled']}), return {ret} after "
            f"{r['env_steps']:,} env steps, warm-up {r['warmup_s']:.1f} s; "
            f"iterations {r['iteration_s']} s"
        )

    runs["mappo"] = run_mappo(mappo_config(), iterations)
    show("mappo")
    runs["mappo_mpe2"] = run_mappo(
        mappo_config(
            env="mpe2.simple_spread_v3:parallel_env",
            env_kwargs={"N": 3, "max_cycles": ROLLOUT_STEPS, "local_ratio": 0.5},
        ),
        iterations,
    )
    show("mappo_mpe2")

    benchmarl_status = "ran"
    try:
        runs["benchmarl"] = run_benchmarl(iterations)
        benchmarl_status = f"BenchMARL {runs['benchmarl']['version']}"
        show("benchmarl")
    except Exception as err:  # keep the mappo half whatever BenchMARL does
        runs["benchmarl"] = None
        benchmarl_status = f"unavailable: {type(err).__name__}: {err}"
        traceback.print_exc()
        print(f"BenchMARL half unavailable: {benchmarl_status}")

    # JaxMARL's config; XLA uses every core, so mappo does too. mappo's recurrent training
    # (as the official MAPPO code's) backpropagates through chunks of 10 steps from the
    # stored hidden states: as many GRU steps forward and backward as whole 128-step
    # sequences, but 10 sequential ones instead of 128, so it compiles. The whole-sequence
    # run shows the cost of JaxMARL's 128-step backpropagation in mappo (eager: a 128-step
    # graph compiles for minutes).
    jaxmarl = MappoConfig(
        num_envs=16,
        rollout_steps=128,
        update_epochs=4,
        minibatch_size=16 * 128 * 3 // 4,
        hidden_dim=128,
        activation="tanh",
        recurrent=True,
        lr=2e-3,
        max_grad_norm=0.5,
        gamma=0.99,
        gae_lambda=0.95,
        clip_coef=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        anneal_lr=True,
        torch_threads=os.cpu_count() or 1,
        seed=0,
    )
    runs["jaxmarl_config"] = run_mappo(
        jaxmarl.replace(data_chunk_length=10, compile="true"), iterations
    )
    show("jaxmarl_config")
    runs["jaxmarl_config_whole_sequences"] = run_mappo(
        jaxmarl.replace(data_chunk_length=128, compile="false"), iterations
    )
    show("jaxmarl_config_whole_sequences")

    bench = runs["benchmarl"]
    vs = runs["mappo"]["frames_per_second"] / bench["frames_per_second"] if bench else None
    vs_same = (
        runs["mappo_mpe2"]["frames_per_second"] / bench["frames_per_second"] if bench else None
    )
    if vs is not None:
        print(
            f"vs_benchmarl: {vs:.2f}x (mappo built-in spread / BenchMARL on mpe2); "
            f"same simulator: {vs_same:.2f}x (mappo on mpe2 / BenchMARL on mpe2)"
        )

    rows = []
    for key, label in labels.items():
        r = runs[key]
        if r is None:
            rows.append([label, None, None, None, None, None, None, None])
            continue
        rows.append(
            [
                label,
                r["frames_per_second"],
                r["collect_s_per_iteration"],
                r["update_s_per_iteration"],
                r["minibatches"],
                r["compiled"],
                r["return"],
                r["env_steps"],
            ]
        )
    table = markdown_table(
        [
            "run",
            "frames/s",
            "collect s/iter",
            "update s/iter",
            "minibatches/epoch",
            "compiled",
            "return reached",
            "env steps",
        ],
        rows,
    )
    ratios = (
        f"`vs_benchmarl` = {vs:.2f} (mappo built-in spread / BenchMARL); same simulator "
        f"(mappo on mpe2 / BenchMARL on mpe2) = {vs_same:.2f}."
        if vs is not None
        else f"`vs_benchmarl` = null: the BenchMARL half is {benchmarl_status}."
    )
    notes = "\n".join(
        [
            f"Task: MPE simple_spread, 3 agents, 25-step episodes. BenchMARL route: PettingZoo "
            f"(mpe2 `simple_spread_v3`, registered with torchrl by a shim in compare.py); "
            f"{benchmarl_status}.",
            "",
            f"Shared settings (runs 1-3): {NUM_ENVS} envs x {ROLLOUT_STEPS} steps = "
            f"{NUM_ENVS * ROLLOUT_STEPS} env steps per update, {EPOCHS} epochs x {MINIBATCHES} "
            "minibatches, "
            f"actor and critic MLP {HIDDEN}x{HIDDEN} tanh, shared policy, centralized critic on "
            "the global state, lr 7e-4, gamma 0.99, lambda 0.95, clip 0.2, entropy 0.01, value "
            "coef 0.5, grad-norm clip 10, 1 torch thread. Frames/s = env steps / (collection + "
            f"update time) of the median of {iterations} timed iterations after 1 warm-up "
            "(perf_counter; "
            "BenchMARL timed with its Callback hooks). Return = mean per-agent return of the "
            "episodes ended in the last timed iteration.",
            "",
            "JaxMARL config runs: 16 envs x 128 steps, 4 epochs x 4 minibatches, lr 2e-3, "
            "max_grad_norm 0.5, GRU 128 (JaxMARL's `mappo_homogenous_rnn_mpe.yaml`), "
            f"{os.cpu_count()} torch threads (XLA on CPU uses every core). The headline "
            "(`jaxmarl_config_frames_per_second`) trains as mappo and the official MAPPO code "
            "do: backpropagation through chunks of 10 steps from the hidden states stored in "
            "the rollout, compiled; it runs as many GRU steps forward and backward as whole "
            "sequences (130 per env with the last chunk padded, against 128), only the "
            "sequential depth differs. The second run backpropagates through whole 128-step "
            f"sequences as JaxMARL does (eager). {iterations} timed iterations of 2048 env "
            "steps; lr annealing does not matter for speed.",
            "",
            ratios,
        ]
    )
    vmas_figures, vmas_section = run_vmas_comparison(vmas_iterations, info)
    write_results(
        "compare",
        "mappo vs BenchMARL MAPPO (and JaxMARL's MPE config)",
        info,
        [notes, table, vmas_section],
        args.quick,
    )

    def figure(key: str, field: str) -> float | None:
        return runs[key][field] if runs[key] else None

    print(
        json.dumps(
            {
                "frames_per_second": runs["mappo"]["frames_per_second"],
                "vs_benchmarl": vs,
                "jaxmarl_config_frames_per_second": runs["jaxmarl_config"]["frames_per_second"],
                "jaxmarl_config_whole_sequences_frames_per_second": runs[
                    "jaxmarl_config_whole_sequences"
                ]["frames_per_second"],
                "mappo_mpe2_frames_per_second": runs["mappo_mpe2"]["frames_per_second"],
                "benchmarl_frames_per_second": figure("benchmarl", "frames_per_second"),
                "vs_benchmarl_same_env": vs_same,
                "mappo_return": runs["mappo"]["return"],
                "mappo_mpe2_return": runs["mappo_mpe2"]["return"],
                "benchmarl_return": figure("benchmarl", "return"),
                "env_steps_each": runs["mappo"]["env_steps"],
                "benchmarl_status": benchmarl_status,
                "benchmarl_env": "mpe2 simple_spread_v3 via PettingZoo (torchrl PettingZooEnv)",
                **vmas_figures,
                "load_average_start": info["load_average"][0],
            }
        )
    )


if __name__ == "__main__":
    main()
