"""Actor, centralized critic and local (IPPO) critic, batched over agents.

Policies (one shared, one per agent, or one per group of agents) live in one
module whose weights carry a group axis `[G, in, out]`; each agent slot reads
its group's slice, and all agents run in one batched matmul. Image
observations pass an `ImageEncoder` (a small CNN, grouped the same way) before
the MLP; the centralized critic encodes its images with one of its own.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from mappo.envs.base import ActionSpec
from mappo.errors import ConfigError

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
HIDDEN_GAIN = math.sqrt(2.0)
IMAGE_FEATURES = 256  # width of an ImageEncoder's output, the MLP's input
# (out_channels, kernel, stride, padding) of the CNN's layers. Images of 36+ pixels a side get
# the Nature-DQN stack (84x84 -> 7x7); smaller ones (a gridworld, 12x12) 3x3 kernels that
# keep every pixel in view (12x12 -> 3x3).
NATURE_CNN = ((32, 8, 4, 0), (64, 4, 2, 0), (64, 3, 1, 0))
SMALL_CNN = ((32, 3, 1, 1), (64, 3, 2, 1), (64, 3, 2, 1))
NATURE_MIN_SIDE = 36
# What `image_layout = auto` reads off a shape alone: a channel axis of grey, RGB, RGBA (or 4
# stacked grey frames) beside two larger sides; read channels first, the two sides must also
# be no more than twice as long as each other. A gridworld's feature planes then fit
# neither order: Overcooked's (4, 5, 26) would otherwise pass as 4 channels of a 5x26
# picture, while channels-last frames of any aspect (pistonball's 457x120x3) stay pictures.
PICTURE_CHANNELS = (1, 3, 4)
PICTURE_MAX_ASPECT = 2


def to_float_input(x: torch.Tensor) -> torch.Tensor:
    """A network's input as floats: uint8 (an image's pixels, as stored) scaled to [0, 1],
    float as it is. Runs per forward pass, so rollouts keep the env's compact dtype."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float() if x.dtype != torch.float32 else x


def image_axes(
    shape: tuple[int, ...], layout: str = "auto", said: str | None = None, env: str | None = None
) -> tuple[tuple[int, int, int], bool]:
    """`(C, H, W)` of an image of `shape` (3 axes) and whether its channels are last.

    `layout` "hwc" or "chw" says it and always wins. "auto" takes what the env
    says (`said`, its `EnvSpec.image_layout`), else reads the shape when only
    one order makes it a picture (`PICTURE_CHANNELS` channels beside two larger
    sides, at most `PICTURE_MAX_ASPECT` apart when channels come first:
    `(84, 84, 4)` and `(457, 120, 3)` are channels last, as Gymnasium's and
    PettingZoo's images are; `(4, 84, 84)` channels first). Any other shape is a
    `ConfigError` naming env `env` and `--image-layout`: a wrong guess trains a
    CNN on scrambled pictures, silently.
    """
    if len(shape) != 3:
        raise ValueError(f"an image has 3 axes, got shape {tuple(shape)}")
    a, b, c = shape
    order = layout if layout != "auto" else said or picture_order((a, b, c))
    if order is None:
        who = f"env '{env}'" if env else "the env"
        raise ConfigError(
            f"{who} observes images of shape {tuple(shape)}; say its axis order "
            "with --image-layout hwc or chw"
        )
    return ((a, b, c), False) if order == "chw" else ((c, a, b), True)


def picture_order(shape: tuple[int, int, int]) -> str | None:
    """The one order, "hwc" or "chw", that reads `shape` as a picture; None if neither or
    both do."""

    def picture(channels: int, height: int, width: int, any_aspect: bool) -> bool:
        return (
            channels in PICTURE_CHANNELS
            and min(height, width) > channels
            and (any_aspect or max(height, width) <= PICTURE_MAX_ASPECT * min(height, width))
        )

    a, b, c = shape
    orders = [
        order
        for order, axes in (("hwc", (c, a, b, True)), ("chw", (a, b, c, False)))
        if picture(*axes)
    ]
    return orders[0] if len(orders) == 1 else None


def _conv_out(side: int, kernel: int, stride: int, padding: int) -> int:
    """Output side length of a convolution."""
    return (side + 2 * padding - kernel) // stride + 1


def _orthogonal(shape: tuple[int, ...], gain: float) -> torch.Tensor:
    """Orthogonal init of a `[..., in, out]` stack of weights, one matrix per leading index."""
    weight = torch.empty(shape)
    for matrix in weight.view(-1, shape[-2], shape[-1]):
        nn.init.orthogonal_(matrix, gain)
    return weight


class GroupedLinear(nn.Module):
    """A linear layer with one weight matrix per policy group.

    Input `[B, A, in]`; `group_of_agent` `[A]` maps each agent slot to its
    group; output `[B, A, out]`. One group is one matmul over all B·A rows;
    several groups are one batched matmul over the agent axis.
    """

    group_of_agent: torch.Tensor  # a buffer, [A]

    def __init__(self, group_of_agent: list[int], in_dim: int, out_dim: int, gain: float) -> None:
        super().__init__()
        num_groups = max(group_of_agent) + 1
        self.weight = nn.Parameter(_orthogonal((num_groups, in_dim, out_dim), gain))
        self.bias = nn.Parameter(torch.zeros(num_groups, out_dim))
        # Independent policies (group a for agent a) read the weights as they are, no gather.
        self.gather = group_of_agent != list(range(len(group_of_agent)))
        self.register_buffer("group_of_agent", torch.tensor(group_of_agent), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.shape[0] == 1:
            return torch.matmul(x, self.weight[0]) + self.bias[0]
        weight: torch.Tensor = self.weight
        bias: torch.Tensor = self.bias
        if self.gather:
            weight, bias = weight[self.group_of_agent], bias[self.group_of_agent]
        out = torch.baddbmm(bias.unsqueeze(1), x.transpose(0, 1), weight)  # [A, B, out]
        return out.transpose(0, 1)

    def per_agent(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Each agent slot's weight `[A, in, out]` and bias `[A, out]` (several groups)."""
        if self.gather:
            return self.weight[self.group_of_agent], self.bias[self.group_of_agent]
        return self.weight, self.bias


class GroupedLayerNorm(nn.Module):
    """LayerNorm over the last axis of `[B, A, D]`, with one affine pair per policy group."""

    group_of_agent: torch.Tensor  # a buffer, [A]

    def __init__(self, group_of_agent: list[int], dim: int) -> None:
        super().__init__()
        num_groups = max(group_of_agent) + 1
        self.weight = nn.Parameter(torch.ones(num_groups, dim))
        self.bias = nn.Parameter(torch.zeros(num_groups, dim))
        self.register_buffer("group_of_agent", torch.tensor(group_of_agent), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight.shape[0] == 1:
            return nn.functional.layer_norm(x, x.shape[-1:], self.weight[0], self.bias[0])
        normed = nn.functional.layer_norm(x, x.shape[-1:])
        return normed * self.weight[self.group_of_agent] + self.bias[self.group_of_agent]


class GroupedConv2d(nn.Module):
    """A 2-D convolution with one filter bank per policy group, batched over agents.

    Input `[N, A, C, H, W]` → `[N, A, out, H', W']`. One group is one convolution
    with the agent axis folded into the batch; several are one grouped
    convolution (`groups=A`) over the agents' channels stacked, each agent slot
    with its own group's filters.
    """

    group_of_agent: torch.Tensor  # a buffer, [A]

    def __init__(
        self,
        group_of_agent: list[int],
        in_channels: int,
        out_channels: int,
        kernel: int,
        stride: int,
        padding: int,
        gain: float,
    ) -> None:
        super().__init__()
        num_groups = max(group_of_agent) + 1
        weight = torch.empty(num_groups, out_channels, in_channels, kernel, kernel)
        for bank in weight:
            nn.init.orthogonal_(bank, gain)  # [out, in·k·k] orthogonal, per group
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(num_groups, out_channels))
        self.stride, self.padding = stride, padding
        self.gather = group_of_agent != list(range(len(group_of_agent)))
        self.register_buffer("group_of_agent", torch.tensor(group_of_agent), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        N, A = x.shape[:2]
        if self.weight.shape[0] == 1:
            out = nn.functional.conv2d(
                x.flatten(0, 1), self.weight[0], self.bias[0], self.stride, self.padding
            )
            return out.unflatten(0, (N, A))
        weight: torch.Tensor = self.weight
        bias: torch.Tensor = self.bias
        if self.gather:
            weight, bias = weight[self.group_of_agent], bias[self.group_of_agent]
        out = nn.functional.conv2d(
            x.flatten(1, 2),
            weight.flatten(0, 1),
            bias.flatten(),
            self.stride,
            self.padding,
            groups=A,
        )  # [N, A·out, H', W']
        return out.unflatten(1, (A, -1))


class ImageEncoder(nn.Module):
    """A small CNN per policy group: flat images `[B, A, O]` → features `[B, A, out_dim]`.

    `shape` is one image's shape as stored (O is its product), read as
    `image_axes(shape, layout, said, env)` says (`said`: the env's `image_layout`, `env`
    its name for the error). uint8 pixels become floats in [0, 1] here,
    per forward pass. Layers: `NATURE_CNN` for images of 36+ pixels a side, else
    `SMALL_CNN`, ReLU after each, then a grouped linear layer to `out_dim`
    (ReLU); orthogonal init with gain √2, zero biases, like the MLP.
    """

    def __init__(
        self,
        group_of_agent: list[int],
        shape: tuple[int, ...],
        layout: str = "auto",
        out_dim: int = IMAGE_FEATURES,
        *,
        said: str | None = None,
        env: str | None = None,
    ) -> None:
        super().__init__()
        (channels, height, width), self.channels_last = image_axes(shape, layout, said, env)
        self.shape, self.out_dim = tuple(shape), out_dim
        stack = NATURE_CNN if min(height, width) >= NATURE_MIN_SIDE else SMALL_CNN
        convs = []
        for out_channels, kernel, stride, padding in stack:
            convs.append(
                GroupedConv2d(
                    group_of_agent, channels, out_channels, kernel, stride, padding, HIDDEN_GAIN
                )
            )
            channels = out_channels
            height = _conv_out(height, kernel, stride, padding)
            width = _conv_out(width, kernel, stride, padding)
        if min(height, width) < 1:
            raise ValueError(f"images of shape {self.shape} are too small for the CNN")
        self.convs = nn.ModuleList(convs)
        self.fc = GroupedLinear(group_of_agent, channels * height * width, out_dim, HIDDEN_GAIN)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = to_float_input(obs).unflatten(-1, self.shape)  # [B, A, *shape]
        if self.channels_last:
            x = x.permute(0, 1, 4, 2, 3)  # [B, A, C, H, W]
        for conv in self.convs:
            x = torch.relu(conv(x))
        return torch.relu(self.fc(x.flatten(2)))


class CriticImageEncoder(nn.Module):
    """The centralized critic's CNN: a global input `[..., n·O]` that is n images (every
    agent's observation concatenated, or the env's own image state, n = 1) → features
    `[..., n·out_dim]`. One CNN for all n images, which fold into the batch; their place
    in the concatenation says whose they are. `layout`, `said`, `env`: as `ImageEncoder`'s."""

    def __init__(
        self,
        num_images: int,
        shape: tuple[int, ...],
        layout: str = "auto",
        out_dim: int = IMAGE_FEATURES,
        *,
        said: str | None = None,
        env: str | None = None,
    ) -> None:
        super().__init__()
        self.num_images = num_images
        self.images = ImageEncoder([0] * num_images, shape, layout, out_dim, said=said, env=env)
        self.out_dim = num_images * out_dim

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        lead = state.shape[:-1]
        images = state.reshape(-1, self.num_images, state.shape[-1] // self.num_images)
        return self.images(images).reshape(*lead, self.out_dim)


def gru_update(
    input_gates: torch.Tensor, hidden_gates: torch.Tensor, hidden: torch.Tensor
) -> torch.Tensor:
    """torch.nn.GRUCell's update from its two projections `[..., 3H]` and the hidden `[..., H]`."""
    in_r, in_z, in_n = input_gates.chunk(3, -1)
    h_r, h_z, h_n = hidden_gates.chunk(3, -1)
    reset = torch.sigmoid(in_r + h_r)
    update = torch.sigmoid(in_z + h_z)
    candidate = torch.tanh(in_n + reset * h_n)
    return (1.0 - update) * candidate + update * hidden


class GruScan(torch.autograd.Function):
    """A GRU over time with a hand-written backward, in layout `[L, G, N, ...]`.

    Autograd would record ~12 small ops per step and replay ~25 in backward, each
    with its bookkeeping; on short rows that overhead, not arithmetic, is the
    cost of a long unroll. Here forward keeps the gates it needs and backward
    runs the chain rule by hand, so one step costs 7 ops forward and 10
    backward, and the recurrent weight's gradient is one matmul over all steps.

    input_gates `[L, G, N, 3H]` (the input projection, bias included), hidden
    `[G, N, H]`, keep `[L, G, N, 1]` (0 clears the state before that step),
    weight `[G, H, 3H]`, bias `[G, 3H]` (group g's recurrent projection is
    `h @ weight[g] + bias[g]`) → states `[L, G, N, H]`, then what backward
    needs (no gradient flows into those). The equations are torch.nn.GRUCell's.
    Under `torch.func.vmap` (several seeds as one network, mappo.seeds) the
    mapped axis joins the groups: K seeds of G groups are one scan of K*G.
    """

    @staticmethod
    def forward(
        input_gates: torch.Tensor,
        hidden: torch.Tensor,
        keep: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        steps, H = input_gates.shape[0], hidden.shape[-1]
        bias = bias.unsqueeze(1)  # [G, 1, 3H]
        previous = hidden.new_empty((steps, *hidden.shape))  # [L, G, N, H] state entering step t
        projected = torch.empty_like(input_gates)  # [L, G, N, 3H] h @ W + b
        gates_rz = input_gates.new_empty((*previous.shape[:-1], 2 * H))  # [L, G, N, 2H] r, z
        candidate = torch.empty_like(previous)  # [L, G, N, H] n
        states = torch.empty_like(previous)  # [L, G, N, H]
        # Per-step views made once: indexing inside the loop costs as much as the arithmetic.
        x_rz, x_n = input_gates[..., : 2 * H].unbind(0), input_gates[..., 2 * H :].unbind(0)
        p_all, p_rz, p_n = (
            projected.unbind(0),
            projected[..., : 2 * H].unbind(0),
            projected[..., 2 * H :].unbind(0),
        )
        rz, reset, update = (
            gates_rz.unbind(0),
            gates_rz[..., :H].unbind(0),
            gates_rz[..., H:].unbind(0),
        )
        keeps, prev, n, out = (
            keep.unbind(0),
            previous.unbind(0),
            candidate.unbind(0),
            states.unbind(0),
        )
        for t in range(steps):
            hidden = torch.mul(hidden, keeps[t], out=prev[t])
            torch.baddbmm(bias, hidden, weight, out=p_all[t])
            torch.add(x_rz[t], p_rz[t], out=rz[t]).sigmoid_()
            torch.addcmul(x_n[t], reset[t], p_n[t], out=n[t]).tanh_()
            hidden = torch.lerp(n[t], hidden, update[t], out=out[t])  # (1 - z) n + z h
        return states, previous, gates_rz, candidate, projected[..., 2 * H :]

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[torch.Tensor, ...], output: tuple) -> None:
        _, _, keep, weight, _ = inputs
        _, previous, gates_rz, candidate, hidden_n = output
        ctx.mark_non_differentiable(previous, gates_rz, candidate, hidden_n)
        ctx.set_materialize_grads(False)  # no zero-filled gradients for those four
        ctx.save_for_backward(previous, gates_rz, candidate, hidden_n, keep, weight)

    @staticmethod
    def vmap(
        info: Any, in_dims: tuple[int | None, ...], *inputs: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, ...], tuple[int, ...]]:
        # Each input's group axis (input_gates, hidden, keep, weight, bias); the mapped axis
        # goes in front of it and the two become one: seed-major groups.
        group_axes = (1, 0, 1, 0, 0)
        folded = []
        for x, mapped, axis in zip(inputs, in_dims, group_axes, strict=True):
            if mapped is None:  # the same for every seed
                x = x.unsqueeze(axis).expand(*x.shape[:axis], info.batch_size, *x.shape[axis:])
            else:
                x = x.movedim(mapped, axis)
            folded.append(x.flatten(axis, axis + 1))
        folded[0] = folded[0].contiguous()
        outputs = GruScan.apply(*folded)
        return tuple(y.unflatten(1, (info.batch_size, -1)) for y in outputs), (1,) * 5

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_states: torch.Tensor, *_: Any) -> tuple[torch.Tensor | None, ...]:
        # Only the states are differentiable: backward runs only when they have a gradient.
        previous, gates_rz, candidate, hidden_n, keep, weight = ctx.saved_tensors
        steps, G, H = previous.shape[0], previous.shape[1], previous.shape[-1]
        weight_t = weight.transpose(1, 2)  # [G, 3H, H]
        # What does not depend on the recursion is computed for all steps at once.
        sigmoid_slope = gates_rz - gates_rz * gates_rz  # [L, G, N, 2H]
        hidden_minus_n = previous - candidate  # [L, G, N, H]
        grad_n_pre = torch.empty_like(previous)  # [L, G, N, H] d(x_n + r * hn)
        grad_projected = previous.new_empty((*previous.shape[:-1], 3 * H))  # [L, G, N, 3H]
        g_all, g_r, g_z, g_rz, g_n = (
            grad_projected.unbind(0),
            grad_projected[..., :H].unbind(0),
            grad_projected[..., H : 2 * H].unbind(0),
            grad_projected[..., : 2 * H].unbind(0),
            grad_projected[..., 2 * H :].unbind(0),
        )
        reset, update = gates_rz[..., :H].unbind(0), gates_rz[..., H:].unbind(0)
        n, slope, h_minus_n = candidate.unbind(0), sigmoid_slope.unbind(0), hidden_minus_n.unbind(0)
        keeps, grad_out, hn, grad_n_out = (
            keep.unbind(0),
            grad_states.unbind(0),
            hidden_n.unbind(0),
            grad_n_pre.unbind(0),
        )
        grad_hidden = grad_out[steps - 1]  # d/d h_t, h_t the state leaving step t
        for t in reversed(range(steps)):
            grad_n = torch.addcmul(grad_hidden, grad_hidden, update[t], value=-1.0)  # (1 - z)
            torch.addcmul(grad_n, grad_n * n[t], n[t], value=-1.0, out=grad_n_out[t])  # tanh
            torch.mul(grad_n_out[t], hn[t], out=g_r[t])
            torch.mul(grad_hidden, h_minus_n[t], out=g_z[t])
            g_rz[t].mul_(slope[t])  # through the sigmoids
            torch.mul(grad_n_out[t], reset[t], out=g_n[t])
            grad_hidden = torch.baddbmm(grad_hidden * update[t], g_all[t], weight_t)
            if t:  # the state entering step t is the last one times keep[t]
                grad_hidden = torch.addcmul(grad_out[t - 1], grad_hidden, keeps[t])
        grad_initial = grad_hidden * keeps[0]
        grad_input = torch.cat([grad_projected[..., : 2 * H], grad_n_pre], -1)  # [L, G, N, 3H]
        # dL/dW[g] = sum over steps and rows of h^T dproj: one matmul for all steps. Group-major
        # rows (a view when G is 1) also make the bias's sum a contiguous one.
        grad_projected_rows = grad_projected.transpose(0, 1).reshape(G, -1, 3 * H)
        grad_weight = torch.bmm(
            previous.transpose(0, 1).reshape(G, -1, H).transpose(1, 2), grad_projected_rows
        )
        return grad_input, grad_initial, None, grad_weight, grad_projected_rows.sum(1)


def gru_scan(
    input_gates: torch.Tensor,
    hidden: torch.Tensor,
    starts: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    advance: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run a GRU over time (`GruScan`), with the input projections `[L, G, N, 3H]` of
    every step computed beforehand so that only the recurrence is left in the loop.

    `hidden` `[G, N, H]` is the state before step 0, cleared where `starts`
    `[L, G, N]` marks an episode start. With `advance` `[L, G, N]` bool (turn-based
    envs: the agent acted), a row's state changes only at the steps it marks and
    is carried unchanged through the others. Returns the states `[L, G, N, H]`.
    """
    keep = (~starts).unsqueeze(-1).to(hidden.dtype)
    if not torch.compiler.is_compiling() and advance is None:  # GruScan has no `advance`
        return GruScan.apply(input_gates.contiguous(), hidden, keep, weight, bias)[0]
    # Compiled, plain ops are better: the compiler fuses each step's gate arithmetic,
    # forward and backward, into a few kernels. Measured on `--preset paper-mpe` (2-core
    # CPU): an update takes 0.65 s so, 0.83 s with GruScan inside the compiled loss.
    states, bias = [], bias.unsqueeze(1)
    for t in range(input_gates.shape[0]):
        hidden = hidden * keep[t]
        new = gru_update(input_gates[t], torch.baddbmm(bias, hidden, weight), hidden)
        hidden = new if advance is None else torch.where(advance[t].unsqueeze(-1), new, hidden)
        states.append(hidden)
    return torch.stack(states)


class GroupedGRUCell(nn.Module):
    """A GRU cell per policy group (torch.nn.GRUCell's equations), batched over agents.

    Input and hidden `[B, A, H]` → new hidden `[B, A, H]`.
    """

    def __init__(self, group_of_agent: list[int], hidden_dim: int) -> None:
        super().__init__()
        self.input = GroupedLinear(group_of_agent, hidden_dim, 3 * hidden_dim, 1.0)
        self.recurrent = GroupedLinear(group_of_agent, hidden_dim, 3 * hidden_dim, 1.0)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        return gru_update(self.input(x), self.recurrent(hidden), hidden)

    def scan(
        self,
        x: torch.Tensor,
        hidden: torch.Tensor,
        starts: torch.Tensor,
        advance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sequences `[B, L, A, H]` from `hidden` `[B, A, H]`, cleared at `starts` `[B, L, A]`,
        each agent's state changing only where `advance` `[B, L, A]` (when given)."""
        B, L, A = x.shape[:3]
        input_gates = self.input(x.flatten(0, 1)).unflatten(0, (B, L))  # [B, L, A, 3H]
        if self.recurrent.weight.shape[0] == 1:  # one shared GRU: every (env, agent) is a row
            layout = (L, 1, B * A)
            states = gru_scan(
                input_gates.transpose(0, 1).reshape(*layout, -1),
                hidden.reshape(1, B * A, -1),
                starts.transpose(0, 1).reshape(layout),
                self.recurrent.weight,
                self.recurrent.bias,
                None if advance is None else advance.transpose(0, 1).reshape(layout),
            )  # [L, 1, B * A, H]
            return states.reshape(L, B, A, -1).transpose(0, 1)
        weight, bias = self.recurrent.per_agent()  # one GRU per agent slot: agents are groups
        states = gru_scan(
            input_gates.permute(1, 2, 0, 3),
            hidden.transpose(0, 1),
            starts.permute(1, 2, 0),
            weight,
            bias,
            None if advance is None else advance.permute(1, 2, 0),
        )  # [L, A, B, H]
        return states.permute(2, 0, 1, 3)


class AgentNetwork(nn.Module):
    """An MLP (optionally GRU) per policy group over each agent's own input, batched over agents.

    `group_of_agent[a]` is the policy group of agent slot a: all zeros for a
    shared network, `0..A-1` for independent ones. When groups are shared by
    several agents, an agent one-hot is appended to the input; its product with
    the first layer is a per-agent row of weights, so it is added as such
    instead of concatenating a one-hot to every input. Input `[B, A, O]` →
    output `[B, A, out_dim]`. The actor and the local (IPPO) critic are two
    heads on this one body. An `encoder` (an `ImageEncoder` for images) maps
    the observations to the MLP's input `[B, A, encoder.out_dim]` first;
    without one, the MLP reads them as floats (`to_float_input`).
    """

    group_of_agent: torch.Tensor  # a buffer, [A]

    def __init__(
        self,
        obs_dim: int,
        group_of_agent: list[int],
        hidden_dim: int,
        out_dim: int,
        activation: str = "tanh",
        head_gain: float = 0.01,
        recurrent: bool = False,
        input_layer_norm: bool = False,
        hidden_layer_norm: bool = False,
        agent_id: bool = True,
        encoder: ImageEncoder | None = None,
    ) -> None:
        super().__init__()
        num_agents = len(group_of_agent)
        self.encoder = encoder
        obs_dim = encoder.out_dim if encoder is not None else obs_dim
        num_groups = max(group_of_agent) + 1
        self.register_buffer("group_of_agent", torch.tensor(group_of_agent), persistent=False)
        self.use_agent_id = agent_id and num_groups < num_agents
        first = _orthogonal((num_groups, obs_dim + num_agents, hidden_dim), HIDDEN_GAIN)
        self.fc1 = GroupedLinear(group_of_agent, obs_dim, hidden_dim, HIDDEN_GAIN)
        with torch.no_grad():
            self.fc1.weight.copy_(first[:, :obs_dim])
        # Rows of the first layer that multiply the agent one-hot: [G, A, hidden].
        self.agent_id_weight = nn.Parameter(
            first[:, obs_dim:].clone(), requires_grad=self.use_agent_id
        )
        self.fc2 = GroupedLinear(group_of_agent, hidden_dim, hidden_dim, HIDDEN_GAIN)
        self.head = GroupedLinear(group_of_agent, hidden_dim, out_dim, head_gain)
        self.act = ACTIVATIONS[activation]()
        self.input_norm = GroupedLayerNorm(group_of_agent, obs_dim) if input_layer_norm else None
        self.gru = GroupedGRUCell(group_of_agent, hidden_dim) if recurrent else None
        # The official MAPPO code's LayerNorm after each hidden layer and after the GRU.
        norms = (2 + recurrent) if hidden_layer_norm else 0
        self.hidden_norms = nn.ModuleList(
            GroupedLayerNorm(group_of_agent, hidden_dim) for _ in range(norms)
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs `[B, A, O]` → outputs `[B, A, out_dim]` (feed-forward networks)."""
        if self.gru is not None:
            raise RuntimeError("a recurrent network needs its hidden state: use forward_recurrent")
        return self.head(self._features(obs))

    def forward_recurrent(
        self, obs: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One recurrent step: obs `[B, A, O]`, hidden `[B, A, H]` → (outputs, hidden);
        without a GRU (a feed-forward critic beside a recurrent actor), `forward` and the
        (empty) hidden unchanged."""
        if self.gru is None:
            return self.head(self._features(obs)), hidden
        hidden = self.gru(self._features(obs), hidden)
        return self.head(self._norm(2, hidden)), hidden

    def unroll(
        self,
        obs: torch.Tensor,
        hidden: torch.Tensor,
        starts: torch.Tensor,
        acting: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Over sequences: obs `[B, L, A, O]` from hidden `[B, A, H]`, cleared at `starts`
        `[B, L, A]` → outputs `[B, L, A, out_dim]`; with `acting` `[B, L, A]` (turn-based)
        an agent's state advances only at its own turns. The MLP and the head run once
        over all steps; only the GRU's recurrence loops over L (without a GRU, nothing
        does)."""
        B, L = obs.shape[:2]
        features = self._features(obs.flatten(0, 1))  # [B·L, A, hidden]
        if self.gru is None:
            return self.head(features).unflatten(0, (B, L))
        states = self.gru.scan(features.unflatten(0, (B, L)), hidden, starts, acting)
        return self.head(self._norm(2, states.flatten(0, 1))).unflatten(0, (B, L))

    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        """The encoder (if any) and MLP trunk, `[B, A, O]` → `[B, A, hidden]`."""
        obs = to_float_input(obs) if self.encoder is None else self.encoder(obs)
        if self.input_norm is not None:
            obs = self.input_norm(obs)
        x = self.fc1(obs)  # [B, A, hidden]
        if self.use_agent_id:
            x = x + self._agent_id_rows()
        x = self._norm(0, self.act(x))
        return self._norm(1, self.act(self.fc2(x)))

    def _norm(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """The `index`-th hidden LayerNorm, or x itself when there are none."""
        return self.hidden_norms[index](x) if self.hidden_norms else x

    def _agent_id_rows(self) -> torch.Tensor:
        """The first layer's one-hot rows of each agent's own group, `[A, hidden]`."""
        if self.agent_id_weight.shape[0] == 1:
            return self.agent_id_weight[0]
        agents = torch.arange(len(self.group_of_agent), device=self.agent_id_weight.device)
        return self.agent_id_weight[self.group_of_agent, agents]


class Actor(AgentNetwork):
    """Decentralized policy: local observation (+ agent one-hot) → action-distribution
    parameters `[B, A, K]` (logits or Gaussian means), with `AgentNetwork`'s layout."""

    def __init__(
        self,
        obs_dim: int,
        group_of_agent: list[int],
        hidden_dim: int,
        action: ActionSpec,
        activation: str = "tanh",
        head_gain: float = 0.01,
        recurrent: bool = False,
        input_layer_norm: bool = False,
        hidden_layer_norm: bool = False,
        agent_id: bool = True,
        encoder: ImageEncoder | None = None,
    ) -> None:
        super().__init__(
            obs_dim,
            group_of_agent,
            hidden_dim,
            action.logits_dim,
            activation,
            head_gain,
            recurrent,
            input_layer_norm,
            hidden_layer_norm,
            agent_id,
            encoder,
        )
        self.action = action
        if action.kind == "continuous":
            self.log_std = nn.Parameter(torch.zeros(max(group_of_agent) + 1, action.logits_dim))

    def agent_log_std(self) -> torch.Tensor:
        """Per-agent log standard deviation `[A, D]` of a Gaussian policy."""
        return self.log_std[self.group_of_agent]


class CentralizedCritic(nn.Module):
    """Value function on the global state: `[B, global_state_dim]` → `[B, num_values]`.

    With `num_values = A` it outputs one value per agent slot from one pass over
    the state, so agents with their own rewards get their own value. With
    `recurrent`, a GRU cell sits between the MLP and the head. An `encoder` (a
    `CriticImageEncoder` for images) maps the state to the MLP's input
    `[B, encoder.out_dim]` first; without one, the MLP reads it as floats.
    """

    def __init__(
        self,
        global_state_dim: int,
        hidden_dim: int,
        num_values: int = 1,
        activation: str = "tanh",
        recurrent: bool = False,
        input_layer_norm: bool = False,
        hidden_layer_norm: bool = False,
        encoder: CriticImageEncoder | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        global_state_dim = encoder.out_dim if encoder is not None else global_state_dim
        act = ACTIVATIONS[activation]
        norm = [nn.LayerNorm(global_state_dim)] if input_layer_norm else []

        def hidden_layer(in_dim: int) -> list[nn.Module]:
            return [
                nn.Linear(in_dim, hidden_dim),
                act(),
                *([nn.LayerNorm(hidden_dim)] if hidden_layer_norm else []),
            ]

        self.trunk = nn.Sequential(
            *norm, *hidden_layer(global_state_dim), *hidden_layer(hidden_dim)
        )
        self.head = nn.Linear(hidden_dim, num_values)
        linears = [m for m in self.trunk if isinstance(m, nn.Linear)] + [self.head]
        for layer, gain in zip(linears, (HIDDEN_GAIN, HIDDEN_GAIN, 1.0), strict=True):
            nn.init.orthogonal_(layer.weight, gain)
            nn.init.zeros_(layer.bias)
        self.gru = nn.GRUCell(hidden_dim, hidden_dim) if recurrent else None
        if self.gru is not None:  # as the actor's GRU (and the official MAPPO code's)
            for weight in (self.gru.weight_ih, self.gru.weight_hh):
                nn.init.orthogonal_(weight)
            for bias in (self.gru.bias_ih, self.gru.bias_hh):
                nn.init.zeros_(bias)
        self.gru_norm = nn.LayerNorm(hidden_dim) if recurrent and hidden_layer_norm else None

    def forward(self, global_state: torch.Tensor) -> torch.Tensor:
        """global_state `[B, S]` → values `[B, num_values]` (feed-forward critics)."""
        if self.gru is not None:
            raise RuntimeError("a recurrent critic needs its hidden state: use forward_recurrent")
        return self.head(self._trunk(global_state))

    def forward_recurrent(
        self, global_state: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: global_state `[B, S]`, hidden `[B, H]` → (values `[B, num_values]`, hidden);
        a feed-forward critic (beside a recurrent actor) returns the (empty) hidden unchanged."""
        if self.gru is None:
            return self.head(self._trunk(global_state)), hidden
        hidden = self.gru(self._trunk(global_state), hidden)
        return self._head(hidden), hidden

    def unroll(
        self, global_state: torch.Tensor, hidden: torch.Tensor, starts: torch.Tensor
    ) -> torch.Tensor:
        """Over sequences: states `[B, L, S]` from hidden `[B, H]`, cleared at `starts`
        `[B, L]` → values `[B, L, num_values]`; only the recurrence loops over L (a
        feed-forward critic ignores `hidden` and `starts`)."""
        gru = self.gru
        if gru is None:
            return self.head(self._trunk(global_state))
        input_gates = nn.functional.linear(self._trunk(global_state), gru.weight_ih, gru.bias_ih)
        states = gru_scan(
            input_gates.transpose(0, 1).unsqueeze(1),
            hidden.unsqueeze(0),
            starts.transpose(0, 1).unsqueeze(1),
            gru.weight_hh.t().unsqueeze(0),
            gru.bias_hh.unsqueeze(0),
        )  # [L, 1, B, H]
        return self._head(states.squeeze(1).transpose(0, 1))

    def _trunk(self, global_state: torch.Tensor) -> torch.Tensor:
        """The encoder (if any) and MLP, `[..., S]` → `[..., hidden]`."""
        x = to_float_input(global_state) if self.encoder is None else self.encoder(global_state)
        return self.trunk(x)

    def _head(self, gru_out: torch.Tensor) -> torch.Tensor:
        """Values from the GRU's output, through its LayerNorm when there is one."""
        return self.head(gru_out if self.gru_norm is None else self.gru_norm(gru_out))


class LocalCritic(AgentNetwork):
    """Independent (IPPO) value functions: each agent's value from its own observation only.

    obs `[B, A, O]` → values `[B, A]`, with the actor's grouping (one critic per
    policy group, seeing the agent one-hot when a group is shared) so that
    `critic = local` changes what the critic sees and nothing else. The same
    interface as `CentralizedCritic`, with a recurrent state per agent `[B, A, H]`.
    """

    def __init__(
        self,
        obs_dim: int,
        group_of_agent: list[int],
        hidden_dim: int,
        activation: str = "tanh",
        recurrent: bool = False,
        input_layer_norm: bool = False,
        hidden_layer_norm: bool = False,
        agent_id: bool = True,
        encoder: ImageEncoder | None = None,
    ) -> None:
        super().__init__(
            obs_dim,
            group_of_agent,
            hidden_dim,
            1,
            activation,
            1.0,
            recurrent,
            input_layer_norm,
            hidden_layer_norm,
            agent_id,
            encoder,
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs `[B, A, O]` → values `[B, A]` (feed-forward critics)."""
        return super().forward(obs).squeeze(-1)

    def forward_recurrent(
        self, obs: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: obs `[B, A, O]`, hidden `[B, A, H]` → (values `[B, A]`, hidden)."""
        values, hidden = super().forward_recurrent(obs, hidden)
        return values.squeeze(-1), hidden

    def unroll(
        self,
        obs: torch.Tensor,
        hidden: torch.Tensor,
        starts: torch.Tensor,
        acting: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """obs `[B, L, A, O]` from hidden `[B, A, H]`, cleared at `starts` `[B, L, A]`
        (advancing only where `acting`, when given) → values `[B, L, A]`."""
        return super().unroll(obs, hidden, starts, acting).squeeze(-1)
