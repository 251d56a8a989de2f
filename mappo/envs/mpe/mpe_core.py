"""Batched MPE physics: the world step of mpe2's `core.World`, on tensors.

Every MPE scenario moves point masses in the plane with the same rules, so the
scenarios (spread, reference, speaker-listener, ...) share this module and only
differ in which entities move, collide, observe and get rewarded.

Entities of one world live in tensors `[E, n, 2]` (E envs, n entities); per-entity
properties (size, mass, collide/movable flags) are `[n]` tensors shared by all envs.

One mpe2 world step, in its order:
  1. force = action force (+ motor noise, unused by our scenarios)
  2. force += contact force between every two colliders (collide=True)
  3. pos += vel * dt                     (position moves with the OLD velocity)
  4. vel = vel * (1 - damping)
  5. vel += force / mass * dt
  6. vel is rescaled to max_speed where it exceeds it

This explicit Euler step with a stiff contact spring is unstable while two
bodies press into each other (rounding differences grow ~1.7x per step), so
float32 and float64 runs of the same episode drift apart during long contacts.

The original multiagent-particle-envs, and the official MAPPO code that copies
it, take step 3 last (`PhysicsParams.move_first=False`): the position moves with
the velocity this step's force has just changed, so an action moves its agent
in the same step instead of the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict, Unpack

import torch


@dataclass(frozen=True)
class PhysicsParams:
    """World constants; the defaults are mpe2's `World` and `SimpleEnv` values."""

    dt: float = 0.1
    damping: float = 0.25
    contact_force: float = 1e2
    contact_margin: float = 1e-3
    # mpe2 multiplies the unit move by `agent.accel`, or by 5.0 when accel is None.
    sensitivity: float = 5.0
    # mpe2 moves with the velocity from before the force (explicit Euler); the original
    # MPE and the official MAPPO code after it (semi-implicit Euler).
    move_first: bool = True


# Unit move of each discrete action, in mpe2's order:
# no-op, left (-x), right (+x), down (-y), up (+y).
_DISCRETE_MOVES = ((0.0, 0.0), (-1.0, 0.0), (1.0, 0.0), (0.0, -1.0), (0.0, 1.0))
NUM_DISCRETE_MOVES = len(_DISCRETE_MOVES)


def discrete_move_table(
    accel: float | torch.Tensor,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Force of each discrete move action, scaled by the agent's acceleration.

    `accel` is one float for all agents (table `[5, 2]`) or a `[n]` tensor of
    per-agent accelerations (table `[n, 5, 2]`). Scaling a unit move by `accel`
    gives the same float as mpe2, which sets u = +-1 and then does u *= accel.
    """
    moves = torch.tensor(_DISCRETE_MOVES, device=device, dtype=dtype)  # [5, 2]
    if isinstance(accel, torch.Tensor):
        return moves * accel.to(device, dtype)[:, None, None]  # [n, 5, 2]
    return moves * accel  # [5, 2]


def discrete_action_force(actions: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Look up the force of discrete move actions `[E, n]` (long) -> `[E, n, 2]`.

    `table` comes from `discrete_move_table`: `[5, 2]` shared, or `[n, 5, 2]`
    per agent. Out-of-range actions raise on CPU and trip a device assert on GPU.
    """
    if table.dim() == 2:
        return table[actions]  # [E, n, 2]
    agent_idx = torch.arange(table.shape[0], device=actions.device)  # [n]
    return table[agent_idx, actions]  # [E, n, 2]


def pairwise_delta(pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Differences and distances between all entity pairs.

    Returns `delta[e, i, j] = pos[e, i] - pos[e, j]` `[E, n, n, 2]` and its
    Euclidean norm `[E, n, n]` (within an ulp of mpe2's sqrt of summed squares).
    """
    delta = pos[:, :, None, :] - pos[:, None, :, :]  # [E, n, n, 2]
    dist = torch.linalg.vector_norm(delta, dim=-1)  # [E, n, n]
    return delta, dist


def contact_pair_mask(collide: torch.Tensor) -> torch.Tensor:
    """Which entity pairs exert contact forces: both collide and they differ, `[n, n]`."""
    n = collide.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=collide.device)
    return collide[:, None] & collide[None, :] & ~eye  # [n, n]


def collision_force(
    pos: torch.Tensor,
    size: torch.Tensor,
    pair_mask: torch.Tensor,
    contact_force: float,
    contact_margin: float,
) -> torch.Tensor:
    """Total contact force on each entity from all others, `[E, n, 2]`.

    mpe2's contact is a softplus of the penetration depth, so it acts between
    every two colliders, overlapping or not; it just decays like exp(-gap / margin)
    with the gap between the two circles:

        force_i += contact_force * (p_i - p_j) / |p_i - p_j| * margin * softplus(-gap / margin)

    `pos` `[E, n, 2]`, `size` `[n]` (radii), `pair_mask` `[n, n]` from
    `contact_pair_mask`. Forces on immovable entities are computed too; the
    integrator ignores them. Coincident entities (distance 0), where mpe2 would
    produce NaN, get no force.
    """
    delta, dist = pairwise_delta(pos)  # [E, n, n, 2], [E, n, n]
    dist_min = size[:, None] + size[None, :]  # [n, n]
    # softplus(x) = log(1 + e^x) = numpy's logaddexp(0, x). Above `threshold` torch
    # returns x itself; at 40 the dropped log1p(e^-x) is below float64 resolution
    # (the default 20 would leave a 2e-9 relative error), and e^40 fits in float32.
    x = -(dist - dist_min) / contact_margin  # [E, n, n]
    penetration = torch.nn.functional.softplus(x, threshold=40.0)
    penetration = penetration * contact_margin  # [E, n, n]
    # 1/dist only where a force acts: self pairs and coincident entities get 0, not inf * 0.
    inv_dist = torch.where(pair_mask & (dist > 0), dist.reciprocal(), 0.0)  # [E, n, n]
    magnitude = contact_force * penetration * inv_dist  # [E, n, n]
    # mpe2 evaluates contact_force * delta / dist * penetration; the same product in
    # another order differs only in the last bit.
    return (delta * magnitude[..., None]).sum(2)  # [E, n, 2]


class Bodies(TypedDict, total=False):
    """Per-entity properties of the integrator; an omitted one takes mpe2's default.

    `mass` and `max_speed` are floats or `[n]` tensors (inf in `max_speed` for
    entities without a limit; None: no limit at all); `movable` `[n]` bool keeps
    immovable entities where they are (None: all move).
    """

    mass: float | torch.Tensor
    max_speed: float | torch.Tensor | None
    movable: torch.Tensor | None


def integrate(
    pos: torch.Tensor,
    vel: torch.Tensor,
    force: torch.Tensor,
    params: PhysicsParams,
    **bodies: Unpack[Bodies],
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Euler step; returns new (pos, vel).

    The velocity is damped, the force added, and the speed clipped; the position
    advances with the velocity from before all that (mpe2's order, `params.move_first`)
    or after it (the original MPE's). `pos`, `vel`, `force` are `[E, n, 2]`; `bodies`
    as `Bodies` describes (mass 1, no speed limit, all movable).
    """
    mass = bodies.get("mass", 1.0)
    max_speed = bodies.get("max_speed")
    movable = bodies.get("movable")
    if isinstance(mass, torch.Tensor):
        mass = mass[:, None]  # [n, 1]
    new_vel = vel * (1.0 - params.damping)
    new_vel = new_vel + (force / mass) * params.dt
    if max_speed is not None:
        if isinstance(max_speed, torch.Tensor):
            max_speed = max_speed[:, None]  # [n, 1]
        speed = torch.sqrt(new_vel[..., 0:1].square() + new_vel[..., 1:2].square())  # [E, n, 1]
        new_vel = torch.where(speed > max_speed, new_vel / speed * max_speed, new_vel)
    new_pos = pos + (vel if params.move_first else new_vel) * params.dt
    if movable is not None:
        keep = ~movable[:, None]  # [n, 1]
        new_pos = torch.where(keep, pos, new_pos)
        new_vel = torch.where(keep, vel, new_vel)
    return new_pos, new_vel


def world_step(
    pos: torch.Tensor,
    vel: torch.Tensor,
    action_force: torch.Tensor,
    size: torch.Tensor,
    pair_mask: torch.Tensor,
    params: PhysicsParams,
    **bodies: Unpack[Bodies],
) -> tuple[torch.Tensor, torch.Tensor]:
    """mpe2's `World.step` for all envs: contact forces, then integration.

    `action_force` `[E, n, 2]` is zero for entities without a controller; `size`
    `[n]` radii and `pair_mask` `[n, n]` (from `contact_pair_mask`) shape the
    contacts, `bodies` the integration. The contact forces are evaluated at the
    positions before the move, as in mpe2.
    """
    force = action_force + collision_force(
        pos, size, pair_mask, params.contact_force, params.contact_margin
    )
    return integrate(pos, vel, force, params, **bodies)


def message_table(
    dim_c: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Message of each word of a discrete speaker, `[C, C]`: word w is the one-hot e_w.

    mpe2 broadcasts a discrete word as a one-hot vector of the channel size C
    (there is no silent word: a speaker always sends one of its C words).
    """
    return torch.eye(dim_c, device=device, dtype=dtype)


def move_and_say_tables(
    accel: float,
    dim_c: int,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Force `[5 * C, 2]` and message `[5 * C, C]` of each action of an agent that moves and speaks.

    mpe2 gives such an agent a single Discrete(5 * C) action and splits it as
    move = a % 5, word = a // 5, so a = word * 5 + move. Indexing the two tables
    with the action does that split as two lookups.
    """
    force = discrete_move_table(accel, device, dtype).repeat(dim_c, 1)  # row a: move a % 5
    words = message_table(dim_c, device, dtype)  # [C, C]
    message = words.repeat_interleave(NUM_DISCRETE_MOVES, dim=0)  # row a: word a // 5
    return force, message
