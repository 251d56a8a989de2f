"""Image observations: CNN encoders, uint8 storage, training, errors, eval and export."""

from __future__ import annotations

import csv
import json
import math
import re
from functools import partial

import pytest
import torch

from mappo import MappoConfig, MappoTrainer
from mappo.cli import main
from mappo.config import ConfigError
from mappo.networks import CriticImageEncoder, GroupedConv2d, ImageEncoder, image_axes

COLOUR = "image_envs:ColourEnv"
GRID = "image_envs:GridEnv"
OVERCOOKED = (4, 5, 26)  # JaxMARL's Overcooked on cramped_room: 4x5 cells, 26 feature planes
H = W = 12
C = 3
# torch 2.13 marks TorchScript deprecated; loading it is what export promises.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")


def trainer_for(**overrides) -> MappoTrainer:
    config = {
        "env": COLOUR,
        "num_envs": 4,
        "rollout_steps": 10,
        "minibatch_size": 20,
        "update_epochs": 2,
        "total_steps": 40,
        "compile": "false",
        **overrides,
    }
    return MappoTrainer(MappoConfig(**config))


def test_image_axes_rule() -> None:
    # Pictures: 1, 3 or 4 channels beside two larger sides, in either order.
    assert image_axes((84, 84, 4)) == ((4, 84, 84), True)
    assert image_axes((84, 84, 3)) == ((3, 84, 84), True)
    assert image_axes((12, 12, 3)) == ((3, 12, 12), True)
    assert image_axes((210, 160, 3)) == ((3, 210, 160), True)  # an Atari frame
    assert image_axes((457, 120, 3)) == ((3, 457, 120), True)  # pistonball's, of any aspect
    assert image_axes((4, 84, 84)) == ((4, 84, 84), False)
    assert image_axes((3, 12, 12)) == ((3, 12, 12), False)
    assert image_axes((1, 64, 48)) == ((1, 64, 48), False)
    # The override wins over the rule and over what the env says.
    assert image_axes((12, 12, 3), "chw") == ((12, 12, 3), False)
    assert image_axes((3, 12, 12), "hwc") == ((12, 3, 12), True)
    assert image_axes((84, 84, 3), "chw", said="hwc") == ((84, 84, 3), False)
    assert image_axes(OVERCOOKED, "chw", said="hwc") == (OVERCOOKED, False)


def test_auto_takes_the_envs_own_axis_order() -> None:
    # Overcooked's grid is channels last, as JaxMARL says: 26 planes of 4x5 cells, not the
    # 4 planes of 5x26 that "the first axis is small" made of it.
    assert image_axes(OVERCOOKED, said="hwc") == ((26, 4, 5), True)
    assert image_axes((3, 84, 84), said="hwc") == ((84, 3, 84), True)  # the env's word wins
    encoder = ImageEncoder([0], OVERCOOKED, said="hwc")
    assert encoder.channels_last
    assert encoder.convs[0].weight.shape == (1, 32, 26, 3, 3)  # [G, out, in = C, k, k]
    grid = torch.randint(0, 2, (3, 1, *OVERCOOKED), dtype=torch.uint8)
    assert encoder(grid.flatten(2)).shape == (3, 1, 256)
    critic = CriticImageEncoder(2, OVERCOOKED, said="hwc")
    assert critic.images.channels_last


@pytest.mark.parametrize(
    "shape", [OVERCOOKED, (26, 4, 5), (8, 8, 8), (4, 4, 4), (3, 84, 4), (3, 40, 200), (5, 9, 26)]
)
def test_a_shape_auto_cannot_read_is_refused_naming_image_layout(shape) -> None:
    said = (
        f"env 'grid' observes images of shape {shape}; say its axis order with "
        "--image-layout hwc or chw"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(said)}$"):
        image_axes(shape, env="grid")
    with pytest.raises(ConfigError, match="--image-layout hwc or chw"):
        ImageEncoder([0], shape)


def test_an_env_of_unreadable_images_trains_once_its_layout_is_given() -> None:
    with pytest.raises(
        ConfigError,
        match=re.escape(
            "observes images of shape (4, 5, 26); say its axis order with --image-layout hwc or chw"
        ),
    ):
        trainer_for(env=GRID)
    hwc = trainer_for(env=GRID, image_layout="hwc")
    assert hwc.env.spec.obs_shape == OVERCOOKED
    assert hwc.policy.actor.encoder.channels_last
    assert hwc.policy.actor.encoder.convs[0].weight.shape[2] == 26
    assert hwc.policy.critic.encoder.images.convs[0].weight.shape[2] == 26
    hwc.train()
    # Whatever the shape suggests, the flag is obeyed.
    chw = trainer_for(env=GRID, image_layout="chw")
    assert not chw.policy.actor.encoder.channels_last
    assert chw.policy.actor.encoder.convs[0].weight.shape[2] == 4
    picture = trainer_for(image_layout="chw")  # ColourEnv's (12, 12, 3) read as 12 channels
    assert picture.policy.actor.encoder.convs[0].weight.shape[2] == 12


def test_training_reads_images_in_the_order_the_env_says() -> None:
    from dataclasses import replace

    from mappo.envs.registry import make_env

    def grid(layout: str = "auto") -> MappoTrainer:
        env = make_env(GRID, 4)
        env.spec = replace(env.spec, image_layout="hwc")  # as JaxMARL's adapter says it
        config = {
            "env": GRID,
            "num_envs": 4,
            "rollout_steps": 10,
            "minibatch_size": 0,
            "total_steps": 40,
            "compile": "false",
            "image_layout": layout,
        }
        return MappoTrainer(MappoConfig(**config), env=env)

    said = grid()
    assert said.policy.actor.encoder.channels_last
    assert said.policy.actor.encoder.convs[0].weight.shape[2] == 26
    assert said.policy.critic.encoder.images.convs[0].weight.shape[2] == 26
    said.train()
    assert grid("chw").policy.actor.encoder.convs[0].weight.shape[2] == 4  # the flag wins
    with pytest.raises(
        ConfigError,
        match=re.escape(f"env '{GRID}' observes images of shape (4, 5, 26); say its axis order"),
    ):
        trainer_for(env=GRID)  # an env that says nothing, and a shape that says nothing


def test_unreadable_images_exit_2_on_the_cli_naming_the_flag(tmp_path, capsys) -> None:
    assert (
        main(
            [
                "train",
                "--run-dir",
                str(tmp_path / "r"),
                "--env",
                GRID,
                "--num-envs",
                "2",
                "--minibatch-size",
                "0",
                "--total-steps",
                "16",
                "--compile",
                "false",
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("say its axis order with --image-layout hwc or chw")


def test_encoder_output_shape_and_scaling() -> None:
    torch.manual_seed(0)
    encoder = ImageEncoder([0, 1], (H, W, C))  # two agents, a CNN each
    pixels = torch.randint(0, 256, (5, 2, H * W * C), dtype=torch.uint8)
    features = encoder(pixels)
    assert features.shape == (5, 2, 256)
    # uint8 pixels are read as pixels / 255.
    assert torch.allclose(features, encoder(pixels.float() / 255), atol=1e-6)
    # 84x84 frames get the Nature-DQN stack: 20x20, 9x9, 7x7 maps of 64 channels.
    nature = ImageEncoder([0], (84, 84, 4))
    assert nature.fc.weight.shape == (1, 64 * 7 * 7, 256)
    assert nature(torch.zeros(3, 1, 84 * 84 * 4, dtype=torch.uint8)).shape == (3, 1, 256)


def test_grouped_conv_runs_each_agent_with_its_groups_filters() -> None:
    torch.manual_seed(0)
    conv = GroupedConv2d([1, 0, 1], 3, 8, 3, 1, 1, 1.0)  # agents 0 and 2 share group 1
    x = torch.randn(4, 3, 3, 6, 6)  # [N, A, C, H, W]
    out = conv(x)
    for agent, group in enumerate([1, 0, 1]):
        by_hand = torch.nn.functional.conv2d(
            x[:, agent], conv.weight[group], conv.bias[group], padding=1
        )
        assert torch.allclose(out[:, agent], by_hand, atol=1e-5)


def test_channels_first_env_is_read_as_channels_first() -> None:
    hwc = ImageEncoder([0], (H, W, C))
    chw = ImageEncoder([0], (C, H, W))
    chw.load_state_dict(hwc.state_dict())
    image = torch.randint(0, 256, (2, 1, H, W, C), dtype=torch.uint8)
    assert not chw.channels_last
    assert torch.allclose(
        hwc(image.flatten(2)), chw(image.permute(0, 1, 4, 2, 3).flatten(2)), atol=1e-6
    )
    trainer = trainer_for(env_kwargs={"layout": "chw"})
    assert trainer.env.spec.obs_shape == (C, H, W)
    assert not trainer.policy.actor.encoder.channels_last


def test_observations_are_stored_as_uint8_memory_by_formula() -> None:
    trainer = trainer_for()
    trainer.collect_rollout()
    buf = trainer.buffer
    T, E, A = 10, 4, 2
    assert buf.observations.dtype == torch.uint8
    assert buf.observations.nbytes == T * E * A * H * W * C * 1 == 34_560
    # The critic's view (every agent's image, concatenated) is uint8 too.
    assert buf.states.dtype == torch.uint8
    assert buf.states.nbytes == T * E * A * H * W * C
    # Each stored image holds one 3x3 patch of 255 in one channel.
    images = buf.observations.view(T, E, A, H, W, C)
    assert (images == 255).sum((-3, -2, -1)).eq(9).all()
    # A minibatch keeps the stored dtype; the networks make floats of it.
    mb = next(buf.minibatches(2))
    assert mb.obs.dtype == torch.uint8
    actor = trainer.policy.actor
    assert torch.allclose(actor(mb.obs), actor(mb.obs.float() / 255), atol=1e-6)


def test_actor_and_critic_get_cnns() -> None:
    trainer = trainer_for()
    policy = trainer.policy
    assert isinstance(policy.actor.encoder, ImageEncoder)
    assert policy.critic_view == (2, H, W, C)  # the two agents' images
    assert policy.critic.encoder.out_dim == 2 * 256
    shared = trainer_for(share_policy=False).policy.actor.encoder  # one CNN per agent
    assert shared.convs[0].weight.shape[0] == 2


def test_an_image_state_gets_the_critics_cnn() -> None:
    trainer = trainer_for(env_kwargs={"image_state": True})
    assert trainer.policy.critic_view == (1, H, W, C)
    trainer.train()
    assert trainer.buffer.states.dtype == torch.uint8
    assert trainer.buffer.states.nbytes == 10 * 4 * H * W * C


def test_mlp_encoder_on_images_flattens_them() -> None:
    trainer = trainer_for(encoder="mlp")
    assert trainer.policy.actor.encoder is None and trainer.policy.critic.encoder is None
    assert trainer.policy.actor.fc1.weight.shape[1] == H * W * C
    trainer.train()
    assert trainer.buffer.observations.dtype == torch.uint8


def test_ippo_critic_gets_its_own_cnn() -> None:
    trainer = trainer_for(critic="local")
    assert isinstance(trainer.policy.critic.encoder, ImageEncoder)
    assert trainer.policy.critic.encoder is not trainer.policy.actor.encoder
    trainer.train()


def test_recurrent_policy_on_images_trains() -> None:
    trainer = trainer_for(recurrent=True, data_chunk_length=5)
    metrics = trainer.train()
    assert math.isfinite(metrics[-1].policy_loss)


def test_cnn_encoder_on_vector_observations_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError,
        match="config key 'encoder' = 'cnn': env 'spread' observes vectors of 18 numbers",
    ):
        MappoTrainer(MappoConfig(encoder="cnn", num_envs=16, compile="false"))


def test_cnn_encoder_on_vectors_exits_2_on_the_cli(tmp_path, capsys) -> None:
    run = tmp_path / "r"
    assert (
        main(
            [
                "train",
                "--run-dir",
                str(run),
                "--encoder",
                "cnn",
                "--num-envs",
                "16",
                "--total-steps",
                "50",
                "--quiet",
            ]
        )
        == 2
    )
    assert "config key 'encoder' = 'cnn'" in capsys.readouterr().err


def test_images_of_different_shapes_are_refused_naming_the_agents() -> None:
    with pytest.raises(ConfigError, match=r"agent_0: \(12, 12, 3\), agent_1: \(14, 14, 3\)"):
        trainer_for(env_kwargs={"ragged": True})


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    """A CLI run on ColourEnv (the critic on the env's image state), 2048 env steps."""
    run = tmp_path_factory.mktemp("runs") / "colour"
    assert (
        main(
            [
                "train",
                "--run-dir",
                str(run),
                "--env",
                COLOUR,
                "--env-kwargs",
                '{"image_state": true}',
                "--num-envs",
                "8",
                "--rollout-steps",
                "32",
                "--minibatch-size",
                "128",
                "--update-epochs",
                "4",
                "--total-steps",
                "2048",
                "--seed",
                "1",
                "--compile",
                "false",
                "--quiet",
            ]
        )
        == 0
    )
    return run


@pytest.mark.slow
def test_return_rises_on_an_image_task(colour_run) -> None:
    # Naming the patch's colour: 4 per episode by chance, 8 when seen (8 steps).
    with open(colour_run / "metrics.csv") as f:
        returns = [float(row["episode_return"]) for row in csv.DictReader(f)]
    assert len(returns) == 8  # 2048 steps of 8 envs x 32
    assert returns[0] < 5.0
    assert sum(returns[-2:]) / 2 > returns[0] + 2.5, returns


def test_eval_and_export_work_with_the_cnn(colour_run, tmp_path, capsys) -> None:
    assert main(["eval", str(colour_run), "--episodes", "16", "--json", "--deterministic"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["episodes"] == 16
    assert result["mean_episode_return"] > 6.0  # 4 by chance, 8 at best
    out = tmp_path / "actors"
    assert main(["export", str(colour_run), "--out", str(out), "--no-onnx"]) == 0
    layout = json.loads((out / "layout.json").read_text())
    assert layout["obs_shape"] == [H, W, C]
    assert layout["inputs"]["obs"].startswith("[B, obs_dim] uint8")
    # The exported file names the colour of a red and of a green patch as trained.
    exported = torch.jit.load(str(out / layout["policies"][0]["file"]))
    images = torch.zeros(2, H, W, C, dtype=torch.uint8)
    images[0, 4:7, 4:7, 0] = 255  # red
    images[1, 2:5, 6:9, 1] = 255  # green
    actions = exported(images.flatten(1), torch.zeros(2, dtype=torch.long))
    assert actions.flatten().tolist() == [0, 1]


def test_supersuit_preprocessed_pistonball_is_a_uint8_channels_last_image() -> None:
    pytest.importorskip("supersuit")
    pytest.importorskip("pymunk")
    from test_examples import load_example

    from mappo.envs.pettingzoo.wrapper import PettingZooWrapper

    example = load_example("image_env")
    env = PettingZooWrapper(partial(example.pistonball, n_pistons=4), num_envs=1, use_state=False)
    try:
        assert env.spec.obs_shape == (84, 84, 4) and env.num_agents == 4
        assert env.spec.obs_dtype == torch.uint8 and env.spec.obs_dim == 84 * 84 * 4
        assert env.spec.action.nvec == (3,)  # discrete moves
        obs = env.step(torch.ones(1, 4, dtype=torch.long)).obs
        assert obs.dtype == torch.uint8 and obs.shape == (1, 4, 84 * 84 * 4)
        assert obs.max() > 0  # the frames show pistons and ball
    finally:
        env.close()
    encoder = ImageEncoder([0] * 4, env.spec.obs_shape)
    assert encoder.channels_last and encoder.fc.weight.shape == (1, 64 * 7 * 7, 256)


def test_image_layout_on_a_vector_env_warns(caplog) -> None:
    with caplog.at_level("WARNING", logger="mappo.trainer"):
        MappoTrainer(MappoConfig(image_layout="chw", num_envs=2, rollout_steps=5, minibatch_size=0))
    assert [r.getMessage() for r in caplog.records] == [
        "image_layout has no effect: env 'spread' has no image observations"
    ]
