"""`mappo eval --render`: spread frames drawn where the agents are, GIFs written and read back."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from mappo import MappoConfig, MappoTrainer
from mappo.checkpoint import save_checkpoint
from mappo.cli import main
from mappo.envs.mpe.spread import AGENT_SIZE, SpreadEnv
from mappo.evaluation import evaluate
from mappo.render import (
    HOLD_FRAMES,
    LANDMARK_RGB,
    SpreadEpisode,
    SpreadPainter,
    agent_color,
    episode_extent,
    exact_palette,
    record_spread,
    render_run,
    spread_frames,
    spread_palette,
    spread_positions,
    write_video,
)

WHITE = (255, 255, 255)
AGENTS = [[-0.5, 0.5], [0.5, 0.5], [0.0, -0.5]]
LANDMARKS = [[-0.5, -0.5], [0.5, -0.5], [0.8, 0.8]]
MOVED = [[-0.2, 0.5], [0.5, 0.5], [0.0, -0.5]]  # agent 0 went 0.3 to the right
SIZE = 240


def _known_episode() -> SpreadEpisode:
    """Two states placed with `set_state`, read back through the env's observations."""
    env = SpreadEnv(num_envs=1, seed=0)
    states = []
    for agents in (AGENTS, MOVED):
        obs = env.set_state(torch.tensor([agents]), torch.tensor([LANDMARKS]))
        states.append(spread_positions(obs[0], env.num_agents))
    return SpreadEpisode(np.stack([a for a, _ in states]), states[0][1], 0.0)


def _pixel(painter: SpreadPainter, rgb: np.ndarray, xy: list[float]) -> tuple[int, ...]:
    col, row = painter.to_pixel(np.asarray(xy, np.float64)).astype(int)
    return tuple(int(c) for c in rgb[row, col])


def test_positions_read_back_from_observations() -> None:
    episode = _known_episode()
    np.testing.assert_allclose(episode.agents[0], AGENTS, atol=1e-6)
    np.testing.assert_allclose(episode.agents[1], MOVED, atol=1e-6)
    np.testing.assert_allclose(episode.landmarks, LANDMARKS, atol=1e-6)


def test_two_frames_show_agents_landmarks_path_and_nothing_else() -> None:
    episode = _known_episode()
    frames = spread_frames(episode, size=SIZE)
    assert len(frames) == 2 and frames[0].shape == (SIZE, SIZE)
    first, second = (spread_palette(3)[f] for f in frames)
    # The view is the spawn square plus an agent radius and a margin: 1.2 on each side.
    assert episode_extent(episode) == pytest.approx(1.0 + AGENT_SIZE + 0.05)
    painter = SpreadPainter(episode_extent(episode), SIZE)
    for a, xy in enumerate(AGENTS):
        assert _pixel(painter, first, xy) == agent_color(a)
    for xy in LANDMARKS:
        assert _pixel(painter, first, xy) == LANDMARK_RGB
        assert _pixel(painter, second, xy) == LANDMARK_RGB
    assert _pixel(painter, second, MOVED[0]) == agent_color(0)
    # Agent 0 left its first place: its path starts there, in its colour lightened.
    path = tuple((c + 255) // 2 for c in agent_color(0))
    assert _pixel(painter, second, AGENTS[0]) == path
    # A rim of half the body colour, just inside the radius; white just outside it.
    rim = tuple(c // 2 for c in agent_color(1))
    assert _pixel(painter, second, [0.5 + AGENT_SIZE - 0.01, 0.5]) == rim
    assert _pixel(painter, second, [0.5 + AGENT_SIZE + 0.02, 0.5]) == WHITE
    for empty in ([0.9, -0.9], [-1.0, 0.0], [0.0, 0.0], [-1.1, 1.1]):
        assert _pixel(painter, first, empty) == WHITE
        assert _pixel(painter, second, empty) == WHITE
    # Discs have their true radius: ~pi r^2 pixels of agent 1's body and rim.
    colored = np.isin(frames[1], [5, 6]).sum()  # agent 1's body and rim indices
    assert colored == pytest.approx(np.pi * (AGENT_SIZE * painter.scale) ** 2, rel=0.05)


def test_gif_holds_the_frames_exactly(tmp_path) -> None:
    frames = spread_frames(_known_episode(), size=SIZE)
    palette = spread_palette(3)
    write_video(frames, tmp_path / "two.gif", fps=5, palette=palette)
    back = iio.imread(tmp_path / "two.gif", index=None)
    assert back.shape == (2, SIZE, SIZE, 3)
    np.testing.assert_array_equal(back, palette[np.stack(frames)])


@pytest.fixture(scope="module")
def spread_trainer() -> MappoTrainer:
    return MappoTrainer(MappoConfig(num_envs=1, minibatch_size=1, seed=4, compile="false"))


def test_recorded_episodes_are_the_evaluated_ones(spread_trainer) -> None:
    policy, env = spread_trainer.policy, spread_trainer.env
    episodes = record_spread(policy, env, 2, deterministic=True, seed=11)
    assert [e.agents.shape for e in episodes] == [(26, 3, 2)] * 2  # reset + 25 steps
    expected = evaluate(policy, env, 2, deterministic=True, seed=11)
    assert [e.episode_return for e in episodes] == pytest.approx(expected)
    env = SpreadEnv(num_envs=1, seed=11)  # the same seed starts the same first episode
    agents, landmarks = spread_positions(env.reset(seed=11)[0], 3)
    np.testing.assert_allclose(episodes[0].agents[0], agents)
    np.testing.assert_allclose(episodes[0].landmarks, landmarks)
    assert not np.allclose(episodes[0].agents[-1], episodes[0].agents[0])


def test_cli_renders_a_run_and_refuses_unknown_formats(spread_trainer, tmp_path,
                                                       capsys) -> None:
    save_checkpoint(tmp_path / "checkpoint.pt", spread_trainer.state_dict())
    gif = tmp_path / "out.gif"
    assert main(["eval", str(tmp_path), "--render", str(gif), "--episodes", "2",
                 "--json"]) == 0
    frames = iio.imread(gif, index=None)
    # 2 x 26 states; the held last frames merge into one longer GIF frame.
    assert 2 * 26 - 2 <= len(frames) <= 2 * (26 + HOLD_FRAMES)
    assert '"episodes": 2' in capsys.readouterr().out.splitlines()[-1]
    assert main(["eval", str(tmp_path), "--render", str(tmp_path / "out.avi")]) == 2
    assert "must end in .gif or .mp4" in capsys.readouterr().err


def test_pettingzoo_env_renders_its_own_frames(tmp_path) -> None:
    config = MappoConfig(env="mpe2.simple_spread_v3:parallel_env", num_envs=1,
                         minibatch_size=1, env_kwargs={"max_cycles": 4}, compile="false")
    trainer = MappoTrainer(config)
    save_checkpoint(tmp_path / "checkpoint.pt", trainer.state_dict())
    trainer.env.close()
    returns = render_run(tmp_path, tmp_path / "pz.gif", episodes=2, seed=3).returns
    assert len(returns) == 2 and all(-40 < r < 0 for r in returns)
    frames = iio.imread(tmp_path / "pz.gif", index=None)
    assert frames.shape[1:] == (700, 700, 3)
    # Reset + 4 steps per episode. MPE agents start at rest, so the first step leaves the
    # picture as it was and the GIF merges that pair; after it, agents move.
    assert len(frames) == 2 * 4
    assert not np.array_equal(frames[0], frames[1])


def test_rgb_frames_of_few_colours_are_stored_exactly(tmp_path) -> None:
    rng = np.random.default_rng(0)
    colours = np.array([[255, 255, 255], [10, 20, 30], [200, 0, 90]], np.uint8)
    frames = [colours[rng.integers(0, 3, (16, 24))] for _ in range(3)]
    indices, palette = exact_palette(frames)
    assert len(palette) == 3
    for frame, index in zip(frames, indices, strict=True):
        np.testing.assert_array_equal(palette[index], frame)
    write_video(frames, tmp_path / "few.gif")
    np.testing.assert_array_equal(iio.imread(tmp_path / "few.gif", index=None), frames)
    # Beyond 256 colours there is no exact palette; the writer quantizes instead.
    noisy = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)]
    assert exact_palette(noisy) is None
    write_video(noisy, tmp_path / "noisy.gif")
    assert iio.imread(tmp_path / "noisy.gif", index=None).shape == (1, 32, 32, 3)


def test_recurrent_policy_renders_the_episodes_eval_measures() -> None:
    trainer = MappoTrainer(MappoConfig(num_envs=1, minibatch_size=1, seed=4, compile="false",
                                       recurrent=True))
    episodes = record_spread(trainer.policy, trainer.env, 2, deterministic=True, seed=11)
    expected = evaluate(trainer.policy, trainer.env, 2, deterministic=True, seed=11)
    assert [e.episode_return for e in episodes] == pytest.approx(expected)


def test_env_that_cannot_render_to_an_array_says_so_in_one_line(tmp_path, capsys) -> None:
    pytest.importorskip("gymnasium")
    env = "gymnasium:gym_envs:WindowOnly-v0"
    config = MappoConfig(env=env, num_envs=2, minibatch_size=1, compile="false")
    trainer = MappoTrainer(config)
    save_checkpoint(tmp_path / "checkpoint.pt", trainer.state_dict())
    trainer.env.close()
    assert main(["eval", str(tmp_path), "--render", str(tmp_path / "out.gif")]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: env '{env}' cannot render to an array: its render modes are 'human' "
        "('human' draws in a window), and --render records the frames of "
        "render_mode='rgb_array'; an env listing 'rgb_array' in metadata['render_modes'] "
        "renders (mappo eval without --render still scores this run)\n"
    )
    assert not (tmp_path / "out.gif").exists()
    assert main(["eval", str(tmp_path), "--episodes", "2"]) == 0  # scoring needs no frames


def test_env_whose_render_fails_says_so_as_a_render_error(tmp_path, capsys) -> None:
    pytest.importorskip("gymnasium")
    env = "gymnasium:gym_envs:NoDisplay-v0"
    trainer = MappoTrainer(MappoConfig(env=env, num_envs=2, minibatch_size=1, compile="false"))
    save_checkpoint(tmp_path / "checkpoint.pt", trainer.state_dict())
    trainer.env.close()
    assert main(["eval", str(tmp_path), "--render", str(tmp_path / "out.gif")]) == 2
    assert capsys.readouterr().err == (
        f"mappo: error: env '{env}' could not draw a frame: render() raised RuntimeError: "
        'Cannot connect to "None"; an env that draws with pyglet or pygame may need a display '
        "even for rgb_array (run the command under xvfb-run)\n"
    )
