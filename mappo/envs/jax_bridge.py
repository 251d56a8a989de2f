"""Envs stepped in JAX, seen from torch: one jitted, vmapped call per step, DLPack both ways.

`JaxVectorEnv` is the torch side that JaxMARL's envs (`mappo.envs.jaxmarl`) and
Jumanji's (`mappo.envs.jumanji`) share. A subclass writes its JAX side as two
pure functions over all E copies, which this class jits once:

* `_reset_all(key)` → (env state, obs `[E, A, O]`, critic state `[E, S]`,
  action mask `[E, A, K]`, alive `[E, A]`);
* `_step_all(key, state, actions, alive)` → (next key, next env state, then the
  arrays named by `OUTPUTS`, in that order), with every finished copy already
  reset inside the call and what it reached kept as `final_obs`/`final_state`.

The outputs reach torch through DLPack without a copy (on CPU, and on a GPU both
frameworks see); actions go back the same way. The env state is a pytree of
arrays: `state_dict` copies its leaves, the key and the current outputs, which
is enough to continue exactly.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from typing import Any

import torch

from mappo.envs.base import MultiAgentEnv, MultiAgentStepResult
from mappo.errors import ConfigError
from mappo.memory import check_fits

try:
    import jax
    import jax.numpy as jnp
except ModuleNotFoundError:  # the adapters check their extra before building an env
    pass

logger = logging.getLogger(__name__)
# What `_step_all` returns after the key and the env state, in this order.
OUTPUTS = (
    "obs",  # [E, A, O]
    "state",  # [E, S]
    "reward",  # [E, A]
    "terminated",  # [E, A]
    "truncated",  # [E, A]
    "alive",  # [E, A]
    "action_mask",  # [E, A, K]
    "env_done",  # [E]
    "final_obs",  # [E, A, O]
    "final_state",  # [E, S]
    "win",  # [E]
)
# The outputs a snapshot keeps: what the next step reads before the env writes again.
CURRENT = ("obs", "state", "action_mask", "alive")


def check_registered(
    name: str, env_id: str, registered: list[str], library: str, where: str
) -> None:
    """Raise the one line for an `env_id` that `library` does not register (`registered`),
    with the nearest names as `--env` (`name`) would spell them and `where` to list them."""
    if env_id in registered:
        return
    import difflib

    near = difflib.get_close_matches(env_id, registered, n=3)
    prefix = name.removesuffix(env_id)  # as --env spelled it
    hint = ("did you mean " + " or ".join(f"'{prefix}{n}'" for n in near) + "? ") if near else ""
    raise ConfigError(f"env '{name}': {library} registers no env '{env_id}'; {hint}see {where}")


def num_entries(shape: Any) -> int:
    """Number of entries of an array of `shape` (a tuple, or an int: Hanabi's space says one)."""
    size = 1
    for n in shape if isinstance(shape, tuple | list) else (shape,):
        size *= int(n)
    return size


def jax_device_for(device: torch.device) -> Any:
    """The JAX device that pairs with torch's `device`: the GPU when torch trains on CUDA
    and JAX sees a GPU, else the CPU (the arrays then cross by one copy per step)."""
    if device.type == "cuda":
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:  # this jaxlib has no GPU backend
            gpus = []
        if gpus:
            return gpus[device.index or 0] if (device.index or 0) < len(gpus) else gpus[0]
        logger.warning(
            "JAX sees no GPU: the JAX env runs on the CPU and its arrays are "
            "copied to %s every step (install jax with CUDA to avoid it)",
            device,
        )
    return jax.devices("cpu")[0]


def to_torch(array: Any, device: torch.device) -> torch.Tensor:
    """A JAX array as a torch tensor on `device`, sharing its memory where both are on the
    same device (DLPack), else one copy."""
    tensor = torch.from_dlpack(array)
    return tensor if tensor.device == device else tensor.to(device)


def to_jax(tensor: torch.Tensor, device: Any) -> Any:
    """Torch actions as a JAX array on `device`, sharing memory where both are on it (64-bit
    integers become int32 first: JAX runs without 64-bit types by default)."""
    if tensor.dtype == torch.long:
        tensor = tensor.to(torch.int32)
    array = jax.dlpack.from_dlpack(tensor.contiguous())
    return array if array.devices() == {device} else jax.device_put(array, device)


def strongly_typed(tree: Any) -> Any:
    """`tree` with no weakly typed leaves (a reset's `step = 0` is one), so that the state
    a reset returns and the one a step returns have the same types: one compile, not two.
    Python numbers in the tree become arrays of JAX's default type for them."""
    return jax.tree.map(lambda x: jnp.asarray(x, dtype=jnp.asarray(x).dtype), tree)


def leaf_to_torch(leaf: Any) -> torch.Tensor:
    """A JAX array copied into a torch tensor a checkpoint can hold (unsigned ints wider
    than a byte, such as PRNG keys, as int64)."""
    import numpy as np

    array = np.asarray(leaf)
    if array.dtype.kind == "u" and array.dtype.itemsize > 1:
        array = array.astype(np.int64)
    return torch.from_numpy(array.copy())


def leaf_from_torch(tensor: torch.Tensor, like: Any, device: Any) -> Any:
    """A saved leaf back as a JAX array of `like`'s dtype and shape on `device`."""
    array = tensor.cpu().numpy().astype(like.dtype)
    if array.shape != like.shape:
        raise ValueError(f"a saved env array has shape {array.shape}, this env's {like.shape}")
    return jax.device_put(array, device)


class JaxVectorEnv(MultiAgentEnv):
    """E copies of an env written in JAX, stepped by one jitted call per step.

    A subclass sets `spec` and `_num_actions` (each agent's `Discrete(n)`, [] for
    continuous actions) before calling `_start`, and writes `_reset_all` and
    `_step_all` (see the module docstring).
    """

    _num_actions: list[int]

    def _start(self, num_envs: int, device: str | torch.device, seed: int | None) -> None:
        """Pair the devices and jit the two functions (they compile on first call)."""
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.jax_device = jax_device_for(self.device)
        # Both run where their inputs live: the key (and the state) on `jax_device`.
        self._reset_fn = jax.jit(self._reset_all)
        self._step_fn = jax.jit(self._step_all)
        self._key = jax.device_put(jax.random.PRNGKey(0 if seed is None else seed), self.jax_device)
        if self.jax_device.platform == "cpu":
            self._check_fits(num_envs)
        self._state: Any = None
        self._alive_jax: Any = None
        self._out: dict[str, torch.Tensor] = {}

    def _check_fits(self, num_envs: int) -> None:
        """Refuse, in one line, copies whose arrays cannot fit in the machine's memory, where
        the kernel would kill the process once JAX allocates them. A step holds the env state
        and its outputs twice over (a finished copy's final observation beside its next one).
        (On a GPU, JAX allocates from its own pool and says when it runs out.) Tracing the
        reset costs nothing more: its first call reuses the trace."""
        held = jax.eval_shape(self._reset_fn, self._key)
        need = 2 * sum(leaf.size * leaf.dtype.itemsize for leaf in jax.tree.leaves(held))
        what = (
            f"env '{self.spec.name}' ({num_envs} copies of its state and observations, "
            f"{self.num_agents} agents x {self.spec.obs_dim} numbers each)"
        )
        check_fits(
            need, max(need // num_envs, 1), torch.device("cpu"), what, "--num-envs",
            "or, where these are the evaluation env's copies, --eval-episodes",
        )  # fmt: skip

    @abstractmethod
    def _reset_all(self, key: Any) -> tuple[Any, ...]:
        """Every copy reset: (state, obs `[E, A, O]`, critic state `[E, S]`, mask, alive)."""

    @abstractmethod
    def _step_all(self, key: Any, state: Any, actions: Any, alive: Any) -> tuple[Any, ...]:
        """Every copy stepped by actions `[E, A]` (or `[E, A, D]`), finished copies reset:
        (key, state, then `OUTPUTS`)."""

    def _info(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The step result's `info` from the step's tensors: `{"win": ...}` where the env
        says which episodes were won; nothing by default."""
        return {}

    @property
    def changing_action_mask(self) -> bool:
        """Whether legal actions change from step to step."""
        return True

    def static_action_mask(self) -> torch.Tensor:
        """`[A, K]` bool: each agent's own action slots (its `Discrete(n)` within the K)."""
        own = torch.ones(self.num_agents, self.spec.action.logits_dim, dtype=torch.bool)
        for agent, n in enumerate(self._num_actions):
            own[agent, n:] = False
        return own

    def own_actions(self) -> Any:
        """`[A, K]` JAX bool: the slots of each agent's `Discrete(n)` (all, if continuous)."""
        if not self._num_actions:  # a continuous box: every dimension is the agent's
            return jnp.ones((self.num_agents, self.spec.action.logits_dim), dtype=bool)
        width = max(self._num_actions)
        return jnp.arange(width)[None, :] < jnp.array(self._num_actions)[:, None]

    def first_action_alone(self) -> Any:
        """`[A, K]` JAX bool: each agent's first action as its only legal one, for an agent
        whose action the env ignores (dead, or done) but whose logits still need one."""
        own = self.own_actions()
        return own & (jnp.arange(own.shape[1]) == 0)[None, :]

    # ---------------------------------------------------------------- torch side

    def reset(self, seed: int | None = None) -> torch.Tensor:
        if seed is not None:
            self._key = jax.device_put(jax.random.PRNGKey(seed), self.jax_device)
        self._key, sub = jax.random.split(self._key)
        state, obs, world, mask, alive = self._reset_fn(sub)
        self._state = state
        self._keep(obs=obs, state=world, action_mask=mask, alive=alive)
        return self._out["obs"]

    def step(self, actions: torch.Tensor) -> MultiAgentStepResult:
        if self._alive_jax is None:
            raise RuntimeError(f"env '{self.spec.name}': call reset() before step()")
        jax_actions = to_jax(actions, self.jax_device)
        key, state, *out = self._step_fn(self._key, self._state, jax_actions, self._alive_jax)
        self._key, self._state = key, state
        self._keep(**dict(zip(OUTPUTS, out, strict=True)))
        t = self._out
        return MultiAgentStepResult(
            obs=t["obs"],
            state=t["state"],
            reward=t["reward"],
            terminated=t["terminated"],
            truncated=t["truncated"],
            alive=t["alive"],
            action_mask=t["action_mask"],
            env_done=t["env_done"],
            final_obs=t["final_obs"],
            final_state=t["final_state"],
            info=self._info(t),
        )

    def _keep(self, **arrays: Any) -> None:
        """Hold the step's JAX arrays (alive goes back into the next step) and their torch
        views, which share their memory."""
        self._alive_jax = arrays["alive"]
        self._jax_out = arrays
        self._out = {k: to_torch(v, self.device) for k, v in arrays.items()}

    def get_global_state(self) -> torch.Tensor:
        return self._out["state"]

    def get_observation(self, agent_id: int) -> torch.Tensor:
        return self._out["obs"][:, agent_id]

    def get_action_mask(self) -> torch.Tensor:
        return self._out["action_mask"]

    def get_alive(self) -> torch.Tensor:
        return self._out["alive"]

    # ------------------------------------------------------------ snapshots

    def state_dict(self) -> dict[str, Any]:
        """Every copy's JAX state (its pytree's leaves as tensors), the key and the current
        outputs: enough to continue exactly."""
        return {
            "leaves": [leaf_to_torch(leaf) for leaf in jax.tree.leaves(self._state)],
            "key": leaf_to_torch(self._key),
            "outputs": {k: self._out[k].clone() for k in CURRENT},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        template = self._state if self._state is not None else self._reset_fn(self._key)[0]
        leaves, treedef = jax.tree.flatten(template)
        if len(state["leaves"]) != len(leaves):
            raise ValueError(
                f"env '{self.spec.name}': the snapshot holds "
                f"{len(state['leaves'])} arrays, this env's state {len(leaves)}"
            )
        restored = [
            leaf_from_torch(saved, like, self.jax_device)
            for saved, like in zip(state["leaves"], leaves, strict=True)
        ]
        self._state = jax.tree.unflatten(treedef, restored)
        self._key = leaf_from_torch(state["key"], self._key, self.jax_device)
        outputs = state["outputs"]
        self._keep(
            **{k: jax.device_put(outputs[k].cpu().numpy(), self.jax_device) for k in CURRENT}
        )
