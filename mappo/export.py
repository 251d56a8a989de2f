"""Ship the actors alone: one TorchScript (and ONNX) file per policy, plus `layout.json`.

Each file serves one policy (the shared one, one agent's, or one group's) with
the run's own `Actor` module, traced (so every file carries the whole actor),
followed by `ActionDistribution.mode`: its actions are `Policy.act(...,
deterministic=True)`'s by construction, the argmax of each sub-action's masked
logits (`[B, n_sub]` int64), or the Gaussian mean clipped to the agent's
bounds (`[B, D]` float32). Inputs:

* `obs` `[B, obs_dim]` float32 (rows of an agent with a smaller observation
  may also come unpadded, `[B, obs_size]`); for an image env, the uint8
  image flattened in its own axis order (`obs_shape` in layout.json);
* `agent` `[B]` int64 agent slot indices, all served by this policy; may be
  None when the policy serves a single agent (a policy serving several needs
  it: the agent one-hot, and a group's slots, are part of the network);
* `mask` `[B, K]` bool, True for legal logits (discrete actions only);
* `hidden` `[B, hidden_dim]` float32, recurrent actors only: the `new_hidden`
  this file returned for the same agent at its previous step, zeros (or None)
  at every episode start of that agent (and when an agent that joined an
  episode late first acts).

A feed-forward file returns the action; a recurrent one `(action, new_hidden)`.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import torch
from torch import nn

from mappo.distributions import ActionDistribution
from mappo.envs.base import MultiAgentEnv
from mappo.evaluation import load_run
from mappo.networks import Actor
from mappo.policy import Policy

if TYPE_CHECKING:
    from mappo.envs.pettingzoo.wrapper import PettingZooWrapper

LAYOUT_FORMAT = "mappo-actors"
LAYOUT_VERSION = 1
ONNX_OPSET = 17


def _own_slot(x: torch.Tensor, agent: torch.Tensor) -> torch.Tensor:
    """Row b's entry at agent slot `agent[b]`: `[B, A, C]` → `[B, C]`."""
    return x.gather(1, agent.view(-1, 1, 1).expand(-1, 1, x.shape[-1]))[:, 0]


class ActorSlot(nn.Module):
    """The trained `Actor`, run for one agent slot per row, then its greedy action.

    The actor takes every slot at once (`[B, A, O]`) and computes each slot
    on its own, so each row's observation (and hidden state) is copied into
    all A slots, the actor runs unchanged on the layout it was trained on, and
    the row's own slot is read back. That costs A times the arithmetic of one
    slot, and buys running the very module that was trained, not a copy of its
    math. `forward(obs [B, O], agent [B], legal [B, K][, hidden [B, H]])` →
    action (and the new hidden state); traced, so inputs are not checked here.
    """

    def __init__(self, actor: Actor) -> None:
        super().__init__()
        self.actor = actor
        self.num_agents = len(actor.group_of_agent)

    def forward(
        self,
        obs: torch.Tensor,
        agent: torch.Tensor,
        legal: torch.Tensor,
        hidden: torch.Tensor | None = None,
    ) -> Any:
        every_slot = (-1, self.num_agents, -1)
        obs = obs.unsqueeze(1).expand(every_slot).contiguous()
        if hidden is None:
            params = self.actor(obs)
        else:
            hidden = hidden.unsqueeze(1).expand(every_slot).contiguous()
            params, hidden = self.actor.forward_recurrent(obs, hidden)
            hidden = _own_slot(hidden, agent)
        spec = self.actor.action
        log_std = self.actor.agent_log_std()[agent] if spec.kind == "continuous" else None
        action = ActionDistribution(spec, _own_slot(params, agent), legal, log_std).mode()
        return action if hidden is None else (action, hidden)


class _GreedyModule(nn.Module):
    """What `GreedyPolicy` and `RecurrentGreedyPolicy` share, all but `forward`: the
    traced `ActorSlot` (`core`), what the env fixes (the agents served, each agent's
    static action mask and Box bounds) and the checks of the inputs."""

    def __init__(
        self,
        core: nn.Module,
        agents: list[int],
        obs_dim: int,
        discrete: bool,
        static_mask: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
    ) -> None:
        super().__init__()
        self.core = core
        self.obs_dim = obs_dim
        self.discrete = discrete
        self.default_agent = agents[0] if len(agents) == 1 else -1
        served = torch.zeros(len(static_mask), dtype=torch.bool)
        served[agents] = True
        # The buffers' types, for mypy; declared here, not in the class body, where
        # TorchScript would read the annotations (as strings, which it cannot resolve).
        self.served: torch.Tensor
        self.static_mask: torch.Tensor
        self.low: torch.Tensor
        self.high: torch.Tensor
        self.register_buffer("served", served)  # [A]
        # np.array copies: the env's arrays may be read-only views.
        self.register_buffer("static_mask", torch.from_numpy(np.array(static_mask, np.bool_)))
        self.register_buffer("low", torch.from_numpy(np.array(low, np.float32)))  # [A, D]
        self.register_buffer("high", torch.from_numpy(np.array(high, np.float32)))  # [A, D]

    def checked(
        self, obs: torch.Tensor, agent: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """obs zero-padded to `[B, obs_dim]` and one served agent index per row `[B]`."""
        if obs.dim() != 2 or obs.shape[1] > self.obs_dim:
            raise ValueError(f"obs must be [B, <= {self.obs_dim}], got {list(obs.shape)}")
        if obs.shape[1] < self.obs_dim:  # an agent with a smaller observation, unpadded
            obs = nn.functional.pad(obs, [0, self.obs_dim - obs.shape[1]])
        if agent is None:
            if self.default_agent < 0:
                raise ValueError("this policy serves several agents: pass agent indices [B]")
            agent = torch.full(
                [obs.shape[0]], self.default_agent, dtype=torch.long, device=obs.device
            )
        elif agent.dim() == 0:
            agent = agent.expand(obs.shape[0])
        if (
            bool((agent < 0).any())
            or bool((agent >= self.served.shape[0]).any())
            or not bool(self.served[agent].all())
        ):
            raise ValueError("agent index not served by this policy (see layout.json)")
        return obs, agent

    def legal(self, agent: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Legal logits `[B, K]`: the agent's own actions, and `mask` where given."""
        legal = self.static_mask[agent]
        return legal if mask is None else legal & mask

    def bounded(self, action: torch.Tensor, agent: torch.Tensor) -> torch.Tensor:
        """Box actions clipped to each row's agent bounds (as the env clips); others as they are."""
        if self.discrete:
            return action
        return torch.clamp(action, self.low[agent], self.high[agent])


class GreedyPolicy(_GreedyModule):
    """One policy of a trained actor, standalone: checked inputs → greedy actions.

    Holds the traced `ActorSlot` (`core`) and what the env fixes: the agents
    served, each agent's static action mask and Box bounds. `forward(obs,
    agent=None, mask=None)` takes the inputs of the module docstring; the
    recurrent form is `RecurrentGreedyPolicy`.
    """

    def forward(
        self, obs: torch.Tensor, agent: torch.Tensor | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Greedy actions for observations `[B, obs_dim]` of the agents `agent` `[B]`."""
        obs, agent = self.checked(obs, agent)
        return self.bounded(self.core(obs, agent, self.legal(agent, mask)), agent)


class RecurrentGreedyPolicy(_GreedyModule):
    """`GreedyPolicy` of a recurrent actor: it takes and returns each row's hidden state."""

    def __init__(
        self,
        core: nn.Module,
        agents: list[int],
        obs_dim: int,
        discrete: bool,
        static_mask: np.ndarray,
        low: np.ndarray,
        high: np.ndarray,
        hidden_dim: int,
    ) -> None:
        super().__init__(core, agents, obs_dim, discrete, static_mask, low, high)
        self.hidden_dim = hidden_dim

    def forward(
        self,
        obs: torch.Tensor,
        agent: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        hidden: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(action, new_hidden)` from hidden `[B, hidden_dim]`; None is an episode start."""
        obs, agent = self.checked(obs, agent)
        if hidden is None:
            hidden = obs.new_zeros([obs.shape[0], self.hidden_dim])
        elif list(hidden.shape) != [obs.shape[0], self.hidden_dim]:
            raise ValueError(
                f"hidden must be [{obs.shape[0]}, {self.hidden_dim}], got {list(hidden.shape)}"
            )
        action, hidden = self.core(obs, agent, self.legal(agent, mask), hidden)
        return self.bounded(action, agent), hidden


# ---------------------------------------------------------------------- layout


def _finite_or_none(values: Any) -> list[float | None]:
    """Bounds for JSON, which has no infinity: None where unbounded."""
    return [float(v) if math.isfinite(float(v)) else None for v in np.asarray(values).ravel()]


def _is_pettingzoo(env: MultiAgentEnv) -> TypeGuard[PettingZooWrapper]:
    """Whether `env` wraps PettingZoo copies (whose layout holds per-agent spaces)."""
    try:
        from mappo.envs.pettingzoo.wrapper import PettingZooWrapper
    except ImportError:  # pettingzoo not installed: no env can be one
        return False
    return isinstance(env, PettingZooWrapper)


def _env_layout(env: MultiAgentEnv) -> dict[str, Any]:
    """Static mask `[A, K]`, bounds `[A, D]`, mask targets and action spaces of each agent."""
    spec = env.spec
    A, action = spec.num_agents, spec.action
    discrete = action.kind == "discrete"
    if _is_pettingzoo(env):
        layout = env.layout
        return {
            "static_mask": layout.static_mask,
            "low": layout.low,
            "high": layout.high,
            "mask_index": [index.tolist() for index in layout.mask_index],
            "spaces": [_space_json(space) for space in layout.action_spaces],
            # Dict observations are how a PettingZoo env hands out an action_mask. A Box
            # static mask marks each agent's own dimensions: nothing a caller masks.
            "has_mask": discrete and (any(layout.dict_obs) or not bool(layout.static_mask.all())),
        }
    # A built-in env: its masks are constant (the slots of actions an agent lacks), so the
    # mask at reset is every step's. An env whose legal actions change (JaxMARL's) says
    # which slots are each agent's with `static_action_mask`, and callers pass the mask.
    static = getattr(env, "static_action_mask", None)
    static_mask = (
        (static() if static is not None else env.get_action_mask()[0])
        .cpu()
        .numpy()
        .astype(np.bool_)
    )  # [A, K]
    changing_mask = bool(getattr(env, "changing_action_mask", False))
    D = 0 if discrete else action.action_dim
    if discrete:
        starts = np.cumsum([0, *action.nvec[:-1]])
        spaces_json = [
            {
                "kind": "discrete",
                "start": [0] * len(action.nvec),
                "nvec": [
                    int(row[a : a + n].sum()) for a, n in zip(starts, action.nvec, strict=True)
                ],
            }
            for row in static_mask
        ]
    else:
        spaces_json = [
            {
                "kind": "continuous",
                "shape": [D],
                "low": _finite_or_none(action.low),
                "high": _finite_or_none(action.high),
            }
        ] * A
    # Each agent's own box where the env knows it (VMAS), else the spec's bounds for all.
    low, high = getattr(env, "action_bounds", (action.low, action.high))
    return {
        "static_mask": static_mask,
        "low": np.broadcast_to(np.asarray(low, np.float32), (A, D)),
        "high": np.broadcast_to(np.asarray(high, np.float32), (A, D)),
        "mask_index": [np.flatnonzero(row).tolist() for row in static_mask],
        "spaces": spaces_json,
        "has_mask": discrete and (changing_mask or not bool(static_mask.all())),
    }


def _space_json(space: Any) -> dict[str, Any]:
    """One agent's own gymnasium action space, as layout.json describes it."""
    from gymnasium import spaces

    if isinstance(space, spaces.Discrete):
        return {"kind": "discrete", "nvec": [int(space.n)], "start": [int(space.start)]}
    if isinstance(space, spaces.MultiDiscrete):
        return {
            "kind": "discrete",
            "nvec": space.nvec.ravel().tolist(),
            "start": np.asarray(space.start).ravel().tolist(),
        }
    return {
        "kind": "continuous",
        "shape": list(space.shape),
        "low": _finite_or_none(space.low),
        "high": _finite_or_none(space.high),
    }


def policy_file_stems(
    agent_names: tuple[str, ...], group_of_agent: list[int], prefixes: str
) -> list[str]:
    """A file name (no suffix) per policy group: `policy`, an agent's name, or its prefix."""
    stems = []
    prefix_list = [p.strip() for p in prefixes.split(",") if p.strip()]
    for g in range(max(group_of_agent) + 1):
        members = [name for name, gg in zip(agent_names, group_of_agent, strict=True) if gg == g]
        if len(members) == len(agent_names):
            stem = "policy"
        elif len(members) == 1:
            stem = members[0]
        else:
            stem = next((p for p in prefix_list if members[0].startswith(p)), f"policy_{g}")
        stem = re.sub(r"[^\w.-]+", "_", stem).strip("._") or f"policy_{g}"
        stems.append(stem if stem not in stems else f"{stem}_{g}")
    return stems


# ---------------------------------------------------------------------- export


def onnx_available() -> bool:
    """Whether the `onnx` package imports, so ONNX files can be written."""
    return importlib.util.find_spec("onnx") is not None


def _example_obs(batch: int, obs_dim: int, dtype: torch.dtype) -> torch.Tensor:
    """Observations to trace with, `[batch, obs_dim]` in the env's dtype (the actor's
    conversion of uint8 pixels to floats is traced with them)."""
    if dtype == torch.uint8:
        return torch.randint(0, 256, (batch, obs_dim), dtype=torch.uint8)
    return torch.randn(batch, obs_dim)


def _traced_core(
    core: ActorSlot, obs_dim: int, hidden_dim: int | None, obs_dtype: torch.dtype = torch.float32
) -> torch.jit.ScriptModule:
    """`core` traced; checked on a second batch size, the one size that varies."""
    num_agents, logits_dim = core.num_agents, core.actor.action.logits_dim

    def inputs(batch: int) -> tuple[torch.Tensor, ...]:
        args = (
            _example_obs(batch, obs_dim, obs_dtype),
            torch.arange(batch) % num_agents,
            torch.ones(batch, logits_dim, dtype=torch.bool),
        )
        return args if hidden_dim is None else (*args, torch.randn(batch, hidden_dim))

    with warnings.catch_warnings():
        # The tracer warns about the actor's branches on its parameters' shapes, which are
        # fixed; and torch 2.13 marks TorchScript deprecated (see `export_policy`).
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.trace(core, inputs(2), check_inputs=[inputs(3)])


def _greedy(
    core: nn.Module, agents: list[int], policy: Policy, env_layout: dict[str, Any]
) -> GreedyPolicy | RecurrentGreedyPolicy:
    """The module of the file serving `agents`, around `core` (traced or not)."""
    fixed = (
        core,
        agents,
        policy.spec.obs_dim,
        policy.action_spec.kind == "discrete",
        env_layout["static_mask"],
        env_layout["low"],
        env_layout["high"],
    )
    if not policy.recurrent:
        return GreedyPolicy(*fixed).eval()
    return RecurrentGreedyPolicy(*fixed, policy.config.hidden_dim).eval()


def _write_onnx(
    policy: GreedyPolicy | RecurrentGreedyPolicy,
    path: Path,
    hidden_dim: int | None,
    obs_dtype: torch.dtype = torch.float32,
) -> tuple[list[str], list[str]]:
    """Export `policy` to an ONNX file with a dynamic batch axis; its input and output names."""
    import onnx

    B = 2
    obs = torch.zeros(B, policy.obs_dim, dtype=obs_dtype)
    agent = policy.served.nonzero()[0].expand(B).contiguous()
    optional = (
        {"mask": torch.ones(B, policy.static_mask.shape[1], dtype=torch.bool)}
        if policy.discrete
        else {}
    )
    if hidden_dim is not None:
        optional["hidden"] = torch.zeros(B, hidden_dim)
    inputs = ["obs", "agent", *optional]
    outputs = ["action"] if hidden_dim is None else ["action", "new_hidden"]
    with warnings.catch_warnings():
        # The TorchScript-based exporter is deprecated, but needs no onnxscript. It traces
        # `forward` on valid inputs, so the checks pass and leave nothing in the graph
        # (the tracer warns that they would not run on other inputs).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            policy,
            (obs, agent),
            str(path),
            kwargs=optional,
            input_names=inputs,
            output_names=outputs,
            opset_version=ONNX_OPSET,
            dynamo=False,
            dynamic_axes={name: {0: "batch"} for name in [*inputs, *outputs]},
        )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    return [i.name for i in model.graph.input], [o.name for o in model.graph.output]


def export_policy(
    policy: Policy, env: MultiAgentEnv, out_dir: str | Path, onnx: bool | None = None
) -> dict[str, Any]:
    """Write every actor policy of `policy` to `out_dir` with `layout.json`; return the layout.

    `env` (any number of copies) supplies the layout: static masks, bounds and
    action spaces of each agent. `onnx=None` writes ONNX files when the `onnx`
    package imports.
    """
    if onnx is None:
        onnx = onnx_available()
    spec, cfg = policy.spec, policy.config
    discrete = spec.action.kind == "discrete"
    hidden_dim = cfg.hidden_dim if policy.recurrent else None
    env_layout = _env_layout(env)
    group_of_agent = policy.actor.group_of_agent.tolist()
    stems = policy_file_stems(spec.agent_names, group_of_agent, cfg.policy_groups)
    # A copy on CPU without gradients: the trained policy stays as it is.
    actor = copy.deepcopy(policy.actor).cpu().eval().requires_grad_(False)
    core = ActorSlot(actor)
    traced = _traced_core(core, spec.obs_dim, hidden_dim, spec.obs_dtype)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier = _files_of_export(out_dir)
    policies, file_of_agent = [], {}
    for g, stem in enumerate(stems):
        agents = [a for a, gg in enumerate(group_of_agent) if gg == g]
        with warnings.catch_warnings():
            # torch 2.13 marks TorchScript deprecated; it is still what loads with
            # nothing but `torch.jit.load` (and from C++ via libtorch).
            warnings.simplefilter("ignore", DeprecationWarning)
            scripted = torch.jit.script(_greedy(traced, agents, policy, env_layout))
            torch.jit.save(scripted, str(out_dir / f"{stem}.pt"))
        entry: dict[str, Any] = {
            "file": f"{stem}.pt",
            "agents": agents,
            "agent_names": [spec.agent_names[a] for a in agents],
            "needs_agent_index": len(agents) > 1,
        }
        if onnx:
            entry["onnx"] = f"{stem}.onnx"
            # The ONNX exporter traces by itself, and not through an already traced module.
            entry["onnx_inputs"], entry["onnx_outputs"] = _write_onnx(
                _greedy(core, agents, policy, env_layout),
                out_dir / f"{stem}.onnx",
                hidden_dim,
                spec.obs_dtype,
            )
        policies.append(entry)
        file_of_agent.update({a: entry["file"] for a in agents})
    action = spec.action
    image = bool(spec.obs_shape)
    inputs = {
        "obs": (
            f"[B, obs_dim] {str(spec.obs_dtype).removeprefix('torch.')}: the agent's image "
            "of obs_shape, flattened in its own axis order"
            if image
            else "[B, obs_dim] float32; an agent's own obs_size floats, zero-padded"
        ),
        "agent": "[B] int64 agent slot index; optional when the file serves one agent",
        "mask": "[B, logits_dim] bool, optional: True = legal logit; an agent's own "
        "action_mask goes at its mask_index",
    }
    if hidden_dim is not None:
        inputs["hidden"] = (
            f"[B, {hidden_dim}] float32: the new_hidden this file returned "
            "for the same agent at its previous step; zeros at every episode "
            "start"
        )
    layout = {
        "format": LAYOUT_FORMAT,
        "version": LAYOUT_VERSION,
        "env": cfg.env,
        "env_kwargs": cfg.env_kwargs,
        "obs_dim": spec.obs_dim,
        **({"obs_shape": list(spec.obs_shape)} if image else {}),
        "action": {
            "kind": action.kind,
            "logits_dim": action.logits_dim,
            **({"nvec": list(action.nvec)} if discrete else {"dim": action.action_dim}),
            "output": (
                "[B, n_sub] int64: the index of each sub-action, 0-based (add the agent's start)"
                if discrete
                else "[B, D] float32: the mean, clipped to the agent's bounds"
            ),
        },
        "has_action_mask": bool(env_layout["has_mask"]),
        "inputs": inputs,
        "outputs": ["action"] if hidden_dim is None else ["action", "new_hidden"],
        "recurrent": None
        if hidden_dim is None
        else {
            "hidden_dim": hidden_dim,
            "initial": "zeros",
            "reset": "at every episode start of that agent, and when it first acts in an "
            "episode it joined late",
            "call": "action, new_hidden = policy(obs, agent, mask, hidden)",
        },
        "policies": policies,
        "agents": [
            {
                "index": a,
                "name": name,
                "policy_file": file_of_agent[a],
                "obs_size": int(spec.obs_sizes[a]) if spec.obs_sizes else spec.obs_dim,
                "action_space": env_layout["spaces"][a],
                "mask_index": env_layout["mask_index"][a],
            }
            for a, name in enumerate(spec.agent_names)
        ],
    }
    (out_dir / "layout.json").write_text(json.dumps(layout, indent=2) + "\n")
    # An earlier export's actor files that this one did not overwrite (an ONNX file after
    # --no-onnx, another run's policy.pt beside per-agent files) go once this one is whole.
    for name in earlier - _files_of_export(out_dir):
        (out_dir / name).unlink(missing_ok=True)
    return layout


def _files_of_export(out_dir: Path) -> set[str]:
    """The actor files the layout.json in `out_dir` lists (of this folder only; none when it
    has no layout.json mappo wrote)."""
    try:
        layout = json.loads((out_dir / "layout.json").read_text())
        names = [p[key] for p in layout["policies"] for key in ("file", "onnx") if key in p]
    except (OSError, ValueError, KeyError, TypeError):
        return set()
    return {n for n in names if isinstance(n, str) and n == Path(n).name}


def export_run(
    run_dir: str | Path, out_dir: str | Path, onnx: bool | None = None
) -> dict[str, Any]:
    """Load the run in `run_dir` (its policy and one env copy, on CPU) and export its actors."""
    policy, env = load_run(run_dir, num_envs=1, device="cpu")
    try:
        return export_policy(policy, env, out_dir, onnx)
    finally:
        env.close()
