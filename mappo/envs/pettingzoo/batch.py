"""k copies of a PettingZoo `ParallelEnv` as one gymnasium env of fixed-shape arrays.

`PettingZooBatch` owns the copies and presents them as arrays laid out by a
`PettingZooLayout`. Its *observation* is a `Dict` of Boxes carrying everything
a step produces (obs, reward, flags, masks, final obs, and the state and final
state where the env has its own), and it resets finished copies itself. To
gymnasium it is an env that never ends: it always reports reward 0 and
terminated/truncated False, so gymnasium's own autoreset never fires.

Agent slots are `env.possible_agents` in order. A slot whose agent has finished
or is absent from the observation dict is not alive: zero observation, every
action legal (so distributions stay valid), reward 0, and no action is sent
for it; in a turn-based env (`aec`), agents waiting for their turn still
receive rewards and finish. `final_obs` holds the observation each agent
received at this step, agents that just finished included (agents the env no
longer observes read zeros), and `final_state` the global state of that view: what the trainer
bootstraps a truncated agent from, even while the rest of its copy goes on. A copy's
episode ends when no agent is left alive (or `env.agents` is empty); it is then
reset in place, and `final_obs`/`final_state` keep what the finished episode
reached. An episode whose agents all terminated is never bootstrapped, so its
end does not ask the env for `state()` (multiwalker cannot give one once a
walker fell): `final_state` then repeats the last state read. Without an env
state (`concat_obs`) the batch carries no state arrays at all: the state is the
observations flattened, which the consumer reads off `obs` and `final_obs`
(`PettingZooLayout.step_space`), so image observations are not copied twice.
"""

from __future__ import annotations

import io
import math
import pickle
import reprlib
import sys
import zlib
from collections.abc import Callable, Mapping
from typing import Any, cast

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.utils.ezpickle import EzPickle

from mappo.envs.base import EnvError, env_raised, error_line
from mappo.envs.pettingzoo.layout import PettingZooLayout

# What a PettingZoo parallel env's calls return, each part a dict by agent.
RETURNS = {
    "reset()": ("observations", "infos"),
    "step()": ("observations", "rewards", "terminations", "truncations", "infos"),
}

# What the one line for an env whose state() failed adds: the setting that needs no state().
STATE_FALLBACK = (
    "the critic reads env.state(); --use-global-state false gives it the agents' "
    "observations instead and never calls it"
)

# The first byte of a pickle of protocol 2 or later (a zlib stream starts with 0x78).
PICKLE_START = pickle.PROTO


class PettingZooBatch(gymnasium.Env):
    """k copies of a PettingZoo `ParallelEnv` as one gymnasium env of arrays.

    `reset(seed=s)` resets copy j with seed `s + j`; `step(actions)` takes
    `[k, A, n]` actions and returns the Dict of step arrays (`PettingZooLayout.step_space`) as its
    observation (reward 0, never terminated or truncated: finished copies are
    reset here). The copies are created on the first reset, so the throwaway
    instance `AsyncVectorEnv` makes in the parent process to read the spaces
    costs nothing. The returned arrays are reused between calls. `first_copy`
    is the index of copy 0 among all copies, for messages. Whatever a copy
    raises in `reset`, `step` or `state` becomes a one-line `EnvError` naming
    the env, the call, the copy and its episode step.
    """

    def __init__(
        self,
        env_fn: Callable[[], Any],
        layout: PettingZooLayout,
        num_copies: int,
        first_copy: int = 0,
    ) -> None:
        self.env_fn, self.layout, self.num_copies = env_fn, layout, num_copies
        self.first_copy = first_copy
        self.observation_space = layout.step_space(num_copies)
        self.action_space = layout.action_space(num_copies)
        self.envs: list[Any] = []
        k = num_copies
        boxes = cast(dict[str, spaces.Box], self.observation_space.spaces)  # a Dict of Boxes
        self._out = {key: np.zeros(box.shape, box.dtype) for key, box in boxes.items()}
        self._env_mask: list[dict[int, np.ndarray]] = [{} for _ in range(k)]
        self._episode_steps = np.zeros(k, np.int64)  # [k]: steps into each copy's episode

    # ------------------------------------------------------------- gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict]:
        """Reset every copy (copy j with seed `seed + j`, if given); the step arrays."""
        super().reset(seed=seed)
        if not self.envs:
            self.envs = [self.env_fn() for _ in range(self.num_copies)]
        out = self._out
        self._episode_steps[:] = 0
        for j, env in enumerate(self.envs):
            seeded = None if seed is None else seed + j
            obs = self._returned(j, "reset()", env.reset, seed=seeded)[0]
            self._read_obs(j, obs, np.zeros(len(self.layout.agents), np.bool_), out["obs"][j])
            self._publish(j, out["obs"][j])
        for key in ("reward", "terminated", "truncated", "env_done"):
            out[key][:] = 0
        out["final_obs"][:] = out["obs"]
        if self.layout.state_source == "env":
            out["final_state"][:] = out["state"]
        return out, {}

    def step(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        """Step every copy with `[k, A, n]` actions; finished copies start over."""
        if self.layout.action.kind == "continuous":
            # One vectorized clip to each agent's own bounds, before any per-agent work.
            actions = np.clip(actions, self.layout.low, self.layout.high)
        acted = self._out["alive"].copy()  # [k, A]: the agents whose actions count this step
        for j in range(self.num_copies):
            self._step_copy(j, actions[j], acted[j])
        return self._out, 0.0, False, False, {}

    def pickled_state(self) -> bytes | str:
        """The copies and the arrays of their current step, pickled by their state; or why
        they cannot be (returned, not raised, so that a worker process survives it)."""
        snapshot = (self.envs, self._out, self._env_mask, self._episode_steps)
        try:
            return _dump_snapshot(snapshot)
        except Exception as err:  # pickling raises TypeError, AttributeError, PicklingError, ...
            return error_line(err)

    def load_pickled_state(self, parts: list[bytes]) -> dict[str, np.ndarray]:
        """Continue from the `pickled_state` of this batch's place in `parts` (one per batch,
        in copy order); the step arrays."""
        data = parts[self.first_copy // self.num_copies]
        snapshot = _load_snapshot(data)
        self.close()  # the copies made at start-up give way to the snapshot's
        self.envs, out, self._env_mask, self._episode_steps = snapshot
        # Only this layout's fields: older snapshots of a concat_obs env also hold state arrays.
        self._out = {key: out[key] for key in cast(spaces.Dict, self.observation_space).spaces}
        return self._out

    def close(self) -> None:
        """Close every copy."""
        for env in self.envs:
            env.close()
        self.envs = []

    # ----------------------------------------------------------------- internals

    def _step_copy(self, j: int, actions: np.ndarray, acted: np.ndarray) -> None:
        """Step copy j with its `[A, n]` actions, sending only those of `acted` `[A]` agents."""
        layout, out, env = self.layout, self._out, self.envs[j]
        sent = {
            name: self._env_action(i, actions[i])
            for i, name in enumerate(layout.agents)
            if acted[i]
        }
        self._episode_steps[j] += 1  # first, so an error in this step names it
        obs, rewards, terminations, truncations, _ = self._returned(j, "step()", env.step, sent)
        finished = np.zeros(len(layout.agents), np.bool_)  # [A], as the env reports it
        turn_based = layout.turn_based
        for i, name in enumerate(layout.agents):
            term = bool(terminations.get(name, False))
            trunc = bool(truncations.get(name, False))
            finished[i] = term or trunc
            # In a parallel env, agents that did not act neither earn rewards nor finish
            # (again). In a turn-based one every agent still in the game does both, between
            # its turns; the adapter reports each agent's flags once.
            counts = acted[i] or turn_based
            reward = rewards.get(name, 0.0) if counts else 0.0
            out["reward"][j, i] = self._floats(reward, j, name, "reward", 1)[0]
            out["terminated"][j, i] = term and counts
            out["truncated"][j, i] = trunc and counts
        # The view this step ended on, agents that just finished included: an agent
        # truncated alone is bootstrapped from it while its copy goes on.
        self._read_obs(j, obs, finished, out["final_obs"][j])
        done = not env.agents or not out["alive"][j].any()
        out["env_done"][j] = done
        env_state = layout.state_source == "env"
        if done:
            if env_state:
                if out["truncated"][j].any():
                    out["final_state"][j] = self._state(j)
                else:
                    # Every agent terminated: nothing is bootstrapped from this state, and
                    # some envs cannot give one after such an end (multiwalker once a walker
                    # fell), so keep the last state read, a finite placeholder nothing reads.
                    out["final_state"][j] = out["state"][j]
            obs = self._returned(j, "reset()", env.reset)[0]
            self._episode_steps[j] = 0
            self._read_obs(j, obs, np.zeros(len(layout.agents), np.bool_), out["obs"][j])
            self._publish(j, out["obs"][j])
        else:
            self._publish(j, out["final_obs"][j])
            if env_state:  # no reset since the step, so env.state() is already read, once
                out["final_state"][j] = out["state"][j]

    def _read_obs(
        self, j: int, obs: dict[str, Any], finished: np.ndarray, into: np.ndarray
    ) -> None:
        """Copy j's observation dict into `into` `[A, O]` (agents absent from it read zeros);
        set alive for who may act next."""
        layout = self.layout
        into[:] = 0
        present = np.zeros(len(layout.agents), np.bool_)  # [A]: in the obs dict
        masks = self._env_mask[j]
        masks.clear()
        for i, name in enumerate(layout.agents):
            if name not in obs:
                continue
            ob = obs[name]
            if layout.dict_obs[i]:
                if not isinstance(ob, dict) or "observation" not in ob:
                    problem = f"expected a dict with 'observation', got {type(ob).__name__}"
                    raise self._error(j, name, "observation", problem)
                if "action_mask" in ob:
                    size = len(layout.mask_index[i])
                    masks[i] = self._floats(ob["action_mask"], j, name, "action_mask", size)
                ob = ob["observation"]
            into[i, : layout.obs_sizes[i]] = self._floats(
                ob, j, name, "observation", layout.obs_sizes[i], layout.obs_dtype
            )
            present[i] = True
        self._out["alive"][j] = present & ~finished

    def _floats(
        self,
        value: Any,
        j: int,
        agent: str,
        field: str,
        size: int,
        dtype: np.dtype | type = np.float32,
    ) -> np.ndarray:
        """`value` as `size` numbers of `dtype` (float32, or uint8 for an image), or an
        EnvError naming env, copy, step, agent and field."""
        try:
            given = np.asarray(value)
            # Text ("1") and None would convert (to 1.0 and nan) and hide the env's bug.
            if given.dtype.kind in "USO":  # str, bytes, objects (None); bfloat16 converts
                raise TypeError(f"{type(value).__name__} {reprlib.repr(value)}")
            # A float64 beyond float32's range becomes inf, which the trainer's check names.
            with np.errstate(over="ignore"):
                flat = given.astype(dtype).reshape(-1)
        except (TypeError, ValueError) as err:
            raise self._error(j, agent, field, f"not numbers ({err})") from None
        if flat.size != size:
            raise self._error(j, agent, field, f"{flat.size} values where its space has {size}")
        return flat

    def _error(self, j: int, agent: str, field: str, problem: str) -> EnvError:
        """An EnvError for a malformed value of one agent's field in copy j."""
        return EnvError(
            f"env '{self.layout.name}' returned a bad {field} for agent '{agent}' in "
            f"{self._where(j)}: {problem}"
        )

    def _call(
        self, j: int, call: str, method: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        """`method(*args, **kwargs)` of copy j; what it raises becomes a one-line EnvError."""
        try:
            return method(*args, **kwargs)
        except (Exception, SystemExit) as err:  # sys.exit in an env ends no run unexplained
            raise env_raised(self.layout.name, call, self._where(j), err) from err

    def _returned(
        self, j: int, call: str, method: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> tuple[Any, ...]:
        """`_call` of copy j's `reset()` or `step()`, whose result must be what PettingZoo's
        parallel API returns (`RETURNS`), or an EnvError naming the part that is not (a
        malformed part would otherwise fail later, in a message naming no copy or step)."""
        result = self._call(j, call, method, *args, **kwargs)
        names = RETURNS[call]
        problem = None
        if not isinstance(result, tuple) or len(result) != len(names):
            size = f"a {len(result)}-tuple" if isinstance(result, tuple) else type(result).__name__
            problem = f"{size}, not ({', '.join(names)})"
        else:
            for name, part in zip(names, result, strict=True):
                if name != "infos" and not isinstance(part, Mapping):  # infos are not read
                    problem = f"{name} as {type(part).__name__}, not a dict by agent"
                    break
        if problem is not None:
            raise EnvError(
                f"env '{self.layout.name}' {call} returned {problem} in {self._where(j)}"
            )
        return result

    def _where(self, j: int) -> str:
        """Copy j among all copies, and its episode step, for messages."""
        return f"env copy {self.first_copy + j} at episode step {self._episode_steps[j]}"

    def _publish(self, j: int, read: np.ndarray) -> None:
        """Fill obs and action_mask of copy j from the observations `read` `[A, O]`
        (`_read_obs`'s; obs itself after a reset) and alive, and its state where the env
        has its own."""
        layout, out = self.layout, self._out
        alive = out["alive"][j]  # [A]
        np.multiply(read, alive[:, None], out=out["obs"][j])  # dead slots read zeros
        mask = out["action_mask"][j]  # [A, K]
        mask[:] = layout.static_mask
        for i, env_mask in self._env_mask[j].items():
            mask[i, layout.mask_index[i]] = np.asarray(env_mask).reshape(-1) != 0
        mask[~alive] = True  # any action is "legal" for a slot whose action is dropped
        if layout.state_source == "env":
            out["state"][j] = self._state(j)

    def _state(self, j: int) -> np.ndarray:
        """The env's own global state of copy j, `[S]`."""
        try:
            state = self._call(j, "state()", self.envs[j].state)
        except EnvError as err:  # say what trains without it
            raise EnvError(f"{err}; {STATE_FALLBACK}") from err.__cause__
        return self._floats(
            state, j, "(global)", "state", self.layout.state_dim, self.layout.state_dtype
        )

    def _env_action(self, i: int, action: np.ndarray) -> Any:
        """Agent i's slice of its padded action row, in the form its space takes."""
        space = self.layout.action_spaces[i]
        if isinstance(space, spaces.Discrete):
            return int(action[0]) + int(space.start)
        if isinstance(space, spaces.MultiDiscrete):
            n = space.nvec.size
            return (action[:n].reshape(space.shape) + space.start).astype(space.dtype)
        box = cast(spaces.Box, space)  # the layout accepts no other kind of action
        return action[: math.prod(box.shape)].reshape(box.shape).astype(box.dtype)


class _StatePickler(pickle.Pickler):
    """A pickler that keeps the state of gymnasium `EzPickle` objects.

    Most PettingZoo envs (mpe2's, sisl's, butterfly's) are `EzPickle`s, which
    pickle only their constructor arguments: unpickled, they would be fresh
    envs, not the episodes in flight. Here they are rebuilt by their
    constructor and then given back every attribute they had. pygame's
    surfaces keep their pixels (an env that draws its observations
    incrementally, as pistonball draws its background only at reset, goes on
    seeing what it drew); its other objects (fonts, clocks; unpicklable) are
    left out and made again by the constructor. Any other attribute that
    cannot be pickled (a C simulator's objects) fails the snapshot, as it
    should.
    """

    def reducer_override(self, obj: Any) -> Any:
        pygame = sys.modules.get("pygame")
        if pygame is not None and isinstance(obj, pygame.Surface):
            return _surface_from_pixels, _surface_pixels(obj)
        if not isinstance(obj, EzPickle):
            return NotImplemented
        state = {
            name: value
            for name, value in vars(obj).items()
            if not type(value).__module__.startswith("pygame")
            or (pygame is not None and isinstance(value, pygame.Surface))
        }
        rebuild = (type(obj), obj._ezpickle_args, obj._ezpickle_kwargs)
        return _construct, rebuild, state, None, None, _set_attributes


# Where mappo's own modules moved since snapshots were written (a pickle names each class by
# its module): old `--resume` snapshots hold `mappo.envs.thirdparty.aec.AECEnvAsParallel`.
MOVED_MODULES = {"mappo.envs.thirdparty": "mappo.envs.pettingzoo"}


class _StateUnpickler(pickle.Unpickler):
    """Reads `_StatePickler`'s snapshots, also those that name a module of mappo's by the
    name it had when they were written (`MOVED_MODULES`)."""

    def find_class(self, module: str, name: str) -> Any:
        for old, new in MOVED_MODULES.items():
            if module == old or module.startswith(old + "."):
                module = new + module[len(old) :]
        return super().find_class(module, name)


def split_snapshots(parts: list[bytes], batches: int) -> list[bytes]:
    """`PettingZooBatch.pickled_state` parts of one run (in copy order) regrouped into
    `batches` parts of equal size, so that a run saved with W workers resumes with another
    number: every copy and its step arrays go on unchanged, only their batch differs."""
    snapshots = [_load_snapshot(part) for part in parts]
    envs = [env for snapshot in snapshots for env in snapshot[0]]
    out = {key: np.concatenate([s[1][key] for s in snapshots]) for key in snapshots[0][1]}
    env_mask = [mask for snapshot in snapshots for mask in snapshot[2]]
    episode_steps = np.concatenate([s[3] for s in snapshots])
    k = len(envs) // batches
    regrouped = []
    for b in range(batches):
        part = slice(b * k, (b + 1) * k)
        out_part = {key: value[part] for key, value in out.items()}
        snapshot = (envs[part], out_part, env_mask[part], episode_steps[part])
        regrouped.append(_dump_snapshot(snapshot))
    return regrouped


def _dump_snapshot(snapshot: tuple) -> bytes:
    """A batch's (copies, step arrays, env masks, episode steps) pickled and compressed:
    copies hold their spaces, constant and large for images (pistonball's state Box is
    5.9 MB of a 13 MB copy), which compress about 150-fold."""
    buffer = io.BytesIO()
    _StatePickler(buffer).dump(snapshot)
    return zlib.compress(buffer.getbuffer(), 1)


def _load_snapshot(data: bytes) -> tuple:
    """A `pickled_state` part as (copies, step arrays, env masks, episode steps)."""
    if data[:1] != PICKLE_START:  # written before snapshots were compressed: a bare pickle
        data = zlib.decompress(data)
    snapshot = _StateUnpickler(io.BytesIO(data)).load()
    if len(snapshot) == 5:  # written while the batch kept a third copy of the observations
        snapshot = snapshot[:2] + snapshot[3:]
    return snapshot


def _surface_pixels(surface: Any) -> tuple:
    """A pygame Surface as (size, flags, depth, RGB bytes, alpha bytes or None), compressed
    (drawn screens are mostly flat colour). 24- and 32-bit surfaces only."""
    import pygame

    depth = surface.get_bitsize()
    if depth not in (24, 32):
        raise pickle.PicklingError(f"a {depth}-bit pygame Surface (only 24 and 32 bits are kept)")
    alpha = surface.get_flags() & pygame.SRCALPHA
    rgb = zlib.compress(pygame.surfarray.array3d(surface).tobytes(), 1)  # [W, H, 3]
    alphas = zlib.compress(pygame.surfarray.array_alpha(surface).tobytes(), 1) if alpha else None
    return surface.get_size(), alpha, depth, rgb, alphas


def _surface_from_pixels(
    size: tuple[int, int], flags: int, depth: int, rgb: bytes, alphas: bytes | None
) -> Any:
    """The pygame Surface `_surface_pixels` took apart."""
    import pygame

    surface = pygame.Surface(size, flags, depth)
    width, height = size
    pixels = np.frombuffer(zlib.decompress(rgb), np.uint8).reshape(width, height, 3)
    pygame.surfarray.blit_array(surface, pixels)
    if alphas is not None:
        view = pygame.surfarray.pixels_alpha(surface)  # locks the surface while it lives
        view[:] = np.frombuffer(zlib.decompress(alphas), np.uint8).reshape(width, height)
        del view
    return surface


def _construct(cls: type, args: tuple, kwargs: dict[str, Any]) -> Any:
    """A fresh `cls(*args, **kwargs)`, as `EzPickle` rebuilds itself."""
    return cls(*args, **kwargs)


def _set_attributes(obj: Any, state: dict[str, Any]) -> None:
    """Give a rebuilt object back the attributes `_StatePickler` kept."""
    obj.__dict__.update(state)
