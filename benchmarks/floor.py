"""The compute floor of one MAPPO training iteration, and mappo's time as a multiple of it.

    python benchmarks/floor.py [--quick] [--repeats N]
    python benchmarks/floor.py --env vmas:balance --preset benchmarl-vmas [--num-envs 60]

For the default `MappoConfig` (spread N=3, 128 envs x 25 steps, 10 epochs,
minibatches of 256 agent-steps, hidden 64) it times, on random tensors and
nothing else:

* rollout floor: T times the forward passes of actor `[E, A, O]` and critic
  `[E, S]` (plain `nn.Sequential` MLPs with the same layer sizes, no_grad);
* update floor: `update_epochs` x the same number of minibatches of the same
  shapes as the trainer's, each forward through actor and critic, a simple
  loss (log-likelihood of random actions + squared value error), backward and
  a fused Adam step.

Then it times mappo's whole iteration (`MappoTrainer.collect_rollout()` +
`update()`) for the same config and reports medians. The trainer compiles its
minibatch loss when `config.compile` resolves to on (auto: total_steps >=
200k, so on for the default config); the floor's loss is then compiled the
same way (`torch.compile(dynamic=False)`, C++ wrapper on CPU), and the headline multiple compares
like with like. The eager pair (trainer with compile="false", eager floor)
is always measured too. Every repeat times all four (floor and mappo, eager
and compiled) one after the other, so all see the same machine load. All use
the trainer's thread count (`config.torch_threads`). Last line: one JSON
object; the table goes to `benchmarks/results/floor.md`.

With `--env` (and `--preset`), the config is that env's (`mappo train --env X
--preset P`); for a VMAS env the floor's rollout also steps VMAS itself
(`vmas` env `step` with random actions, the same copies), so that the floor is
the env's own stepping plus the network passes. `--num-envs` shrinks a heavy
preset's iteration (BenchMARL's 600 copies x 100 steps x 45 epochs) to time it
in minutes: minibatch shapes and epochs stay, only their number per epoch
falls. The table then goes to `benchmarks/results/floor_<env>.md`.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from bench_common import machine_info, machine_line, markdown_table, median, write_results
from torch import nn

from mappo import MappoConfig, MappoTrainer
from mappo.presets import build_config
from mappo.trainer import COMPILE_MIN_STEPS

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(in_dim: int, hidden: int, out_dim: int, activation: str) -> nn.Sequential:
    """Two hidden layers, like mappo's actor and critic."""
    act = ACTIVATIONS[activation]
    return nn.Sequential(
        nn.Linear(in_dim, hidden),
        act(),
        nn.Linear(hidden, hidden),
        act(),
        nn.Linear(hidden, out_dim),
    )


class Floor:
    """The bare forward/backward work of one iteration of `cfg`, on random tensors."""

    def __init__(
        self, cfg: MappoConfig, compiled: bool, env_step: Callable[[], object] | None = None
    ) -> None:
        T, E, A = cfg.rollout_steps, cfg.num_envs, cfg.num_agents
        obs_dim, S, K = cfg.obs_dim, cfg.global_state_dim, cfg.action_dim
        self.cfg = cfg
        self.env_step = env_step  # the env's own step, where the floor includes it
        self.actor = mlp(obs_dim, cfg.hidden_dim, K, cfg.activation)
        self.critic = mlp(S, cfg.hidden_dim, A, cfg.activation)
        params = [*self.actor.parameters(), *self.critic.parameters()]
        self.optimizer = torch.optim.Adam(params, lr=cfg.lr, eps=cfg.adam_eps, fused=True)
        # Rollout inputs, one slice per step.
        self.rollout_obs = torch.randn(T, E, A, obs_dim)
        self.rollout_state = torch.randn(T, E, S)
        # Update inputs: T*E rows of all agents, split like the trainer splits them.
        rows = T * E
        self.obs = torch.randn(rows, A, obs_dim)
        self.state = torch.randn(rows, S)
        self.actions = torch.randint(0, K, (rows, A, 1))
        self.targets = torch.randn(rows, A)
        samples = rows * A
        self.num_minibatches = max(1, round(samples / cfg.minibatch_size))
        self.bounds = torch.linspace(0, rows, self.num_minibatches + 1).round().long().tolist()
        self.loss_fn: Callable[..., torch.Tensor] = (
            torch.compile(
                self.loss, dynamic=False, options={"cpp_wrapper": cfg.device.startswith("cpu")}
            )
            if compiled
            else self.loss
        )

    def loss(
        self,
        obs: torch.Tensor,
        state: torch.Tensor,
        actions: torch.Tensor,
        targets: torch.Tensor,
    ) -> torch.Tensor:
        """Negative log-likelihood of the actions plus the squared value error."""
        log_probs = torch.log_softmax(self.actor(obs), dim=-1).gather(-1, actions)
        value_error = (self.critic(state) - targets).square()
        return value_error.mean() - log_probs.mean()

    @torch.no_grad()
    def rollout(self) -> None:
        for t in range(self.cfg.rollout_steps):
            if self.env_step is not None:
                self.env_step()
            self.actor(self.rollout_obs[t])
            self.critic(self.rollout_state[t])

    def update(self) -> None:
        bounds = self.bounds
        for _ in range(self.cfg.update_epochs):
            for start, end in zip(bounds[:-1], bounds[1:], strict=True):
                loss = self.loss_fn(
                    self.obs[start:end],
                    self.state[start:end],
                    self.actions[start:end],
                    self.targets[start:end],
                )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()


def vmas_step(trainer: MappoTrainer) -> Callable[[], object] | None:
    """VMAS's own step of the trainer's env copies with random actions (a copy of them, so
    the trainer's own run is left as it was), or None for other envs."""
    from mappo.envs.vmas import VmasEnv

    if not isinstance(trainer.env, VmasEnv):
        return None
    import copy

    raw = copy.deepcopy(trainer.env._env)
    raw.reset()
    spec = trainer.env.spec.action
    low, high = torch.tensor(spec.low), torch.tensor(spec.high)
    per_agent = [low + (high - low) * torch.rand(raw.num_envs, len(spec.low)) for _ in raw.agents]
    return lambda: raw.step(per_agent)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(configs: dict[str, MappoConfig], repeats: int, warmup: int) -> dict[str, dict]:
    """Median seconds per iteration of the floor and of mappo, for each named config.

    Every repeat times all sides one after the other (floor, mappo, for each
    config), so that they all see the same machine load.
    """
    sides = {}
    for mode, cfg in configs.items():
        trainer = MappoTrainer(cfg)
        compiled = trainer.compiled  # the trainer's resolved choice
        sides[mode] = (trainer, Floor(trainer.config, compiled, vmas_step(trainer)))
    warmup_s = {}
    for mode, (trainer, floor) in sides.items():
        start = time.perf_counter()
        for _ in range(warmup):  # first kernels, allocator, and the compiles (one per shape)
            floor.rollout()
            floor.update()
            trainer.collect_rollout()
            trainer.update()
        warmup_s[mode] = time.perf_counter() - start
    parts = ("floor_rollout", "floor_update", "mappo_rollout", "mappo_update")
    times = {mode: {k: [] for k in parts} for mode in sides}
    for _ in range(repeats):
        for mode, (trainer, floor) in sides.items():
            times[mode]["floor_rollout"].append(timed(floor.rollout))
            times[mode]["floor_update"].append(timed(floor.update))
            times[mode]["mappo_rollout"].append(timed(trainer.collect_rollout))
            times[mode]["mappo_update"].append(timed(trainer.update))
    results = {}
    for mode, t in times.items():
        floor_iter = [r + u for r, u in zip(t["floor_rollout"], t["floor_update"], strict=True)]
        mappo_iter = [r + u for r, u in zip(t["mappo_rollout"], t["mappo_update"], strict=True)]
        r = {k: median(v) for k, v in t.items()}
        r["floor_iteration"] = median(floor_iter)
        r["mappo_iteration"] = median(mappo_iter)
        r["floor_iteration_min"] = min(floor_iter)
        r["mappo_iteration_min"] = min(mappo_iter)
        r["multiple_of_floor"] = r["mappo_iteration"] / r["floor_iteration"]
        r["multiple_rollout"] = r["mappo_rollout"] / r["floor_rollout"]
        r["multiple_update"] = r["mappo_update"] / r["floor_update"]
        r["warmup_s"] = warmup_s[mode]
        r["num_minibatches"] = sides[mode][1].num_minibatches
        r["compiled"] = sides[mode][0].compiled
        results[mode] = r
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (under two minutes)")
    parser.add_argument("--repeats", type=int, default=None, help="timed iterations per side")
    parser.add_argument("--env", default=None, help="an env other than the default's")
    parser.add_argument("--preset", default=None, help="a preset for --env")
    parser.add_argument("--num-envs", type=int, default=None, help="fewer env copies")
    args = parser.parse_args()
    repeats = args.repeats or (4 if args.quick else 15)
    warmup = 2
    info = machine_info()
    print(machine_line(info))

    fields = {"env": args.env} if args.env else {}
    if args.num_envs:
        fields["num_envs"] = args.num_envs
    default = build_config(args.preset, None, fields) if fields or args.preset else MappoConfig()
    trainer_compiles = default.compile == "true" or (
        default.compile == "auto" and default.total_steps >= COMPILE_MIN_STEPS
    )
    print(
        f"config: {default.env}, {default.num_envs} envs x {default.rollout_steps} steps, "
        f"{default.update_epochs} epochs, minibatch {default.minibatch_size} agent-steps, "
        f"hidden {default.hidden_dim}, torch_threads {default.torch_threads}, "
        f"compile={default.compile} (total_steps {default.total_steps:,}) -> trainer "
        f"{'compiles' if trainer_compiles else 'does not compile'} its minibatch loss"
    )

    what = (
        f"`mappo train --env {args.env}"
        + (f" --preset {args.preset}" if args.preset else "")
        + (f" --num-envs {args.num_envs}`" if args.num_envs else "`")
        if args.env
        else "default `MappoConfig`"
    )
    env_floor = (
        " For a VMAS env the floor's rollout also steps VMAS itself (random actions, "
        "the same copies); the floor's loss is the discrete one on D outputs for continuous "
        "actions (a Gaussian's costs the same order)."
        if args.env and args.env.startswith("vmas:")
        else ""
    )
    configs = {"eager": default.replace(compile="false")}
    if trainer_compiles:
        configs["compiled"] = default.replace(compile="true")
    results = measure(configs, repeats, warmup)
    for mode, r in results.items():
        print(
            f"[{mode}] floor {1e3 * r['floor_iteration']:.1f} ms/iter "
            f"(rollout {1e3 * r['floor_rollout']:.1f} + update {1e3 * r['floor_update']:.1f}), "
            f"mappo {1e3 * r['mappo_iteration']:.1f} ms/iter "
            f"(rollout {1e3 * r['mappo_rollout']:.1f} + update {1e3 * r['mappo_update']:.1f}) "
            f"-> mappo = {r['multiple_of_floor']:.2f} x floor "
            f"(rollout {r['multiple_rollout']:.2f} x, update {r['multiple_update']:.2f} x); "
            f"{r['num_minibatches']} minibatches/epoch, warm-up {r['warmup_s']:.1f} s"
        )

    headline_mode = "compiled" if trainer_compiles else "eager"
    head = results[headline_mode]
    env_steps = default.num_envs * default.rollout_steps
    print(
        f"headline ({headline_mode}, the trainer's own choice for the default config): "
        f"mappo {env_steps / head['mappo_iteration']:,.0f} env steps/s, "
        f"floor {env_steps / head['floor_iteration']:,.0f} env steps/s, "
        f"multiple_of_floor {head['multiple_of_floor']:.2f}"
    )

    rows = []
    for mode, r in results.items():
        rows.append(
            [
                mode,
                "floor",
                1e3 * r["floor_rollout"],
                1e3 * r["floor_update"],
                1e3 * r["floor_iteration"],
                env_steps / r["floor_iteration"],
                1.0,
            ]
        )
        rows.append(
            [
                mode,
                "mappo",
                1e3 * r["mappo_rollout"],
                1e3 * r["mappo_update"],
                1e3 * r["mappo_iteration"],
                env_steps / r["mappo_iteration"],
                r["multiple_of_floor"],
            ]
        )
    table = markdown_table(
        ["loss", "what", "rollout ms", "update ms", "iteration ms", "env steps/s", "x floor"],
        rows,
    )
    notes = (
        f"Config: {what} ({default.env}, {default.num_envs} envs x "
        f"{default.rollout_steps} steps, {default.update_epochs} epochs x "
        f"{head['num_minibatches']} minibatches of ~{default.minibatch_size} agent-steps, "
        f"hidden {default.hidden_dim}, torch_threads {default.torch_threads}). Medians of "
        f"{repeats} interleaved repeats after {warmup} warm-up iterations (perf_counter). "
        f"The trainer {'compiles' if trainer_compiles else 'does not compile'} its minibatch "
        f"loss for this config (compile={default.compile}, total_steps "
        f"{default.total_steps:,}); the headline multiple is the **{headline_mode}** pair: "
        f"**{head['multiple_of_floor']:.2f} x floor**. Floor = plain MLP forward passes "
        "(rollout) and forward + backward + fused Adam on random minibatches (update), "
        "nothing else; mappo = `collect_rollout()` + `update()` (env steps, sampling, "
        "buffer writes, GAE, value normalization, shuffling, grad clipping, diagnostics)."
        + env_floor
    )
    write_results(
        "floor" + (f"_{default.env.replace(':', '_')}" if args.env else ""),
        f"Compute floor vs mappo's training iteration: {default.env}",
        info,
        [notes, table],
        args.quick,
    )

    out = {
        "multiple_of_floor": head["multiple_of_floor"],
        "floor_compiled": headline_mode == "compiled",
        "floor_ms_per_iteration": 1e3 * head["floor_iteration"],
        "mappo_ms_per_iteration": 1e3 * head["mappo_iteration"],
        "mappo_env_steps_per_second": env_steps / head["mappo_iteration"],
        "floor_env_steps_per_second": env_steps / head["floor_iteration"],
        "multiple_rollout": head["multiple_rollout"],
        "multiple_update": head["multiple_update"],
        "eager_floor_ms_per_iteration": 1e3 * results["eager"]["floor_iteration"],
        "eager_mappo_ms_per_iteration": 1e3 * results["eager"]["mappo_iteration"],
        "eager_multiple_of_floor": results["eager"]["multiple_of_floor"],
        "load_average_start": info["load_average"][0],
        "repeats": repeats,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
