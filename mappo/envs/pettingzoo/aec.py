"""A turn-based PettingZoo `AECEnv` as a PettingZoo `ParallelEnv` in which one agent acts.

Card and board games (pettingzoo.classic, Hanabi) are AEC envs: agents take
turns, `env.agent_selection` names the one to act. `AECEnvAsParallel` shows
such an env through the parallel API, so `PettingZooWrapper` runs it as it
runs any PettingZoo env: the same layout probe, padding, masks, worker pool,
errors and `--resume` snapshots.

What is read, and how it maps:

* one parallel step is one AEC step: the observation dict holds only the
  agent to act (`env.observe(env.agent_selection)`), so that agent alone is
  alive; the others' slots read zeros, every action legal, and nothing is sent
  for them.
* rewards: `env.rewards` after the step, for every agent still in the game,
  not only the one that acted. PettingZoo's `rewards` are the last step's, so
  their sum over the steps between an agent's turns is what `last()` would
  give it as the cumulative reward since it last acted; the learner credits
  that sum to the agent's last action (`compute_gae` with `acting`).
* terminations / truncations: `env.terminations` / `env.truncations` after
  the step, each reported once, at the step an agent becomes done (whoever
  acted), with the agent's observation at that moment in the observation dict
  (its final view: a time limit is bootstrapped from it; not alive, since it
  is done). Agents that are done are then stepped with `None` actions until
  PettingZoo removes them, as the AEC API requires; the episode is over when
  `env.agents` is empty.
* action masks: the `action_mask` of a Dict observation (pettingzoo.classic's
  form), read by the layout as for any PettingZoo env.
* global state: `env.state()` where the env has one (else the critic sees
  every agent's padded observation, the acting agent's alone non-zero).

`turn_based = True` tells the layout, and through it the `EnvSpec`, that
agents that did not act still receive rewards and finish.
"""

from __future__ import annotations

from typing import Any

from gymnasium import spaces
from pettingzoo.utils.env import AECEnv


def parallel_view(env: Any) -> Any:
    """`env` as the parallel API shows it: an `AECEnv` adapted, anything else as it is."""
    return AECEnvAsParallel(env) if isinstance(env, AECEnv) else env


class AECEnvAsParallel:
    """A PettingZoo `AECEnv` behind the parallel API, one agent acting per step."""

    turn_based = True  # read by the layout: rewards and flags of agents that did not act count

    def __init__(self, env: AECEnv) -> None:
        self.env = env
        self.possible_agents = list(env.possible_agents)

    # --------------------------------------------------------- PettingZoo parallel API

    @property
    def agents(self) -> list[str]:
        """The agents still in the game (PettingZoo removes done ones after their None step)."""
        return list(self.env.agents)

    def observation_space(self, agent: str) -> spaces.Space:
        """The AEC env's own space for `agent`."""
        return self.env.observation_space(agent)

    def action_space(self, agent: str) -> spaces.Space:
        """The AEC env's own space for `agent`."""
        return self.env.action_space(agent)

    @property
    def unwrapped(self) -> Any:
        """The AEC env without its wrappers (where the layout looks for `max_cycles`)."""
        return self.env.unwrapped

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, Any], dict[str, dict]]:
        """Reset the game; the observation of the agent to act first."""
        self.env.reset(seed=seed, options=options)
        self._remove_done_agents()
        return self._observe_selected()

    def step(self, actions: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """Play the selected agent's action; every agent's reward and new flags, and the
        observation of the agent to act next."""
        env = self.env
        # Agents in the game and not yet done: the ones whose rewards and flags this step has.
        playing = [
            a
            for a in env.agents
            if not (env.terminations.get(a, False) or env.truncations.get(a, False))
        ]
        env.step(actions[env.agent_selection])
        rewards = {a: env.rewards.get(a, 0.0) for a in playing}
        terminations = {a: bool(env.terminations.get(a, False)) for a in playing}
        truncations = {a: bool(env.truncations.get(a, False)) for a in playing}
        infos = {a: env.infos.get(a, {}) for a in playing}
        # Each agent this step finished is seen once more, before the done-steps remove it:
        # an agent cut by a time limit is bootstrapped from this view.
        final = {a: env.observe(a) for a in playing if terminations[a] or truncations[a]}
        self._remove_done_agents()
        obs, _ = self._observe_selected()
        return {**final, **obs}, rewards, terminations, truncations, infos

    def state(self) -> Any:
        """The AEC env's `state()` (AECEnv's default raises NotImplementedError)."""
        return self.env.state()

    def render(self) -> Any:
        """The env's own `render()`, in the `render_mode` it was made with."""
        return self.env.render()

    def close(self) -> None:
        """Close the env."""
        self.env.close()

    # ------------------------------------------------------------------- internals

    def _remove_done_agents(self) -> None:
        """Step every done agent PettingZoo selects with None until a live one is to act (or
        none is left), as the AEC API requires."""
        env = self.env

        def selected_is_done() -> bool:
            agent = env.agent_selection
            return bool(env.agents) and (env.terminations[agent] or env.truncations[agent])

        for _ in range(len(env.agents)):  # each None step removes one agent
            if not selected_is_done():
                return
            env.step(None)
        if selected_is_done():  # an env whose None steps remove nobody would loop forever
            raise RuntimeError(
                f"done agent '{env.agent_selection}' is still selected after "
                "every agent was stepped with None"
            )

    def _observe_selected(self) -> tuple[dict[str, Any], dict[str, dict]]:
        """The observation and info of the agent to act, alone; empty once the game is over."""
        env = self.env
        if not env.agents:
            return {}, {}
        agent = env.agent_selection
        return {agent: env.observe(agent)}, {agent: env.infos.get(agent, {})}
