"""Training progress for a person at a terminal or for a batch job's log: a tqdm bar, or a
summary line every `SUMMARY_INTERVAL_S` seconds; and the recent return they show."""

from __future__ import annotations

import errno
import math
import sys
import time
from collections import deque
from typing import TextIO

from mappo.stop_signals import output_lost, silence, stream_name
from mappo.trainer import MappoMetrics

RECENT_UPDATES = 10  # the "recent return" pools the episodes of this many updates
SUMMARY_INTERVAL_S = 30.0  # one progress line this often when stdout is not a terminal


class RecentReturns:
    """Mean per-agent return of the episodes finished in the last `RECENT_UPDATES` updates.

    Every episode weighs the same, so an update that finished 4 episodes counts
    4 times one that finished 1; an update that finished none still takes its
    slot, so old returns age out while no episode ends.
    """

    def __init__(self, updates: int = RECENT_UPDATES) -> None:
        self._window: deque[tuple[float, int]] = deque(maxlen=updates)  # (return sum, episodes)

    def add(self, episode_return: float, episodes: int) -> None:
        """One update: the mean return of the `episodes` it finished (NaN when none)."""
        self._window.append((episode_return * episodes if episodes else 0.0, episodes))

    @property
    def episodes(self) -> int:
        """Episodes finished in the window."""
        return sum(count for _, count in self._window)

    @property
    def mean(self) -> float:
        """Their mean return; NaN when none finished."""
        episodes = self.episodes
        return sum(total for total, _ in self._window) / episodes if episodes else math.nan

    def text(self, digits: int = 2) -> str:
        """The mean for people: `digits` decimals, or n/a."""
        return f"{self.mean:.{digits}f}" if self.episodes else "n/a"


class Progress:
    """Training progress on `stream` (stdout by default), for a person or for a log.

    On a terminal, a tqdm bar with steps/s and the recent return. Otherwise
    (batch jobs, CI, `> log`) no carriage returns: one summary line every
    `SUMMARY_INTERVAL_S` seconds and one at the end. `quiet` shows neither.

    What the recent episodes say, over the same window as the return: in a
    zero-sum game (whose mean return is always 0) each seat's win rate and the
    draw rate in its place; the win rate where the env reports wins; and where
    the recent return reads 0 (sparse rewards), the fraction of the episodes
    that earned any reward.
    """

    def __init__(
        self, total: int, env_steps: int, quiet: bool, stream: TextIO | None = None
    ) -> None:
        from tqdm import tqdm

        self.stream = stream or sys.stdout
        self.total = total
        self.env_steps = env_steps
        self.recent = RecentReturns()
        # The same window over rates: each a mean of 1 (won, drawn, rewarded) and 0.
        self.recent_wins = RecentReturns()
        self.recent_seats = (RecentReturns(), RecentReturns())  # first, second seat's wins
        self.recent_draws = RecentReturns()
        self.recent_rewarded = RecentReturns()
        terminal = self.stream.isatty()
        self._bar = (
            tqdm(
                total=total,
                initial=env_steps,
                unit="step",
                unit_scale=True,
                dynamic_ncols=True,
                file=self.stream,
            )
            if terminal and not quiet
            else None
        )
        self._lines = not terminal and not quiet
        self.reader_gone = False  # the output is a pipe whose reader ended (`write`)
        # The first write that failed otherwise (`write`): the stream's name and the error.
        self.failed: tuple[str, OSError] | None = None
        self._start = self._line_time = time.monotonic()
        self._line_steps = env_steps

    @property
    def bar_on_terminal(self) -> bool:
        """Whether a bar is drawn on a terminal: its line ends with no newline."""
        return self._bar is not None

    def write(self, line: str, stream: TextIO | None = None) -> None:
        """A line of its own (above the bar on a terminal), on `stream` if given. Where
        nothing reads the output any more the line is dropped, as are the lines after it
        (`output_lost`), and a failed line does not fail the run: on a terminal that hung
        up (EIO) the run's SIGHUP, on its way, stops it (`StopOnSignal`), or a run started
        with `& disown` trains on; a pipe whose reader ended (EPIPE: `mappo train | head`)
        sets `reader_gone`, which stops the run after its update, saved. Any other failure
        (a full disk under a log file) sets `failed`, which stops it so too, then says why
        (`Run.train`); the lines after it go nowhere."""
        stream = stream or self.stream
        try:
            if self._bar is not None and stream is self.stream:
                self._bar.write(line, file=stream)
            else:
                print(line, file=stream, flush=True)
        except OSError as err:
            if output_lost(err, stream):
                self.reader_gone |= err.errno == errno.EPIPE
                return
            self.failed = self.failed or (stream_name(stream), err)
            silence(stream)

    def update(self, metrics: MappoMetrics) -> None:
        """Take one update's metrics; redraw the bar, or print a line when one is due."""
        self.env_steps = metrics.env_steps
        self.remember(metrics)
        if self._bar is not None:
            self._bar.update(metrics.env_steps - self._bar.n)  # the bar shows the rate
            self._bar.set_postfix(self.recent_stats())
        elif self._lines and time.monotonic() - self._line_time >= SUMMARY_INTERVAL_S:
            self._summary_line()

    def remember(self, metrics: MappoMetrics) -> None:
        """Take one update's episodes into the recent windows, drawing nothing: `update`'s,
        or one logged before a resume."""
        self.recent.add(metrics.episode_return, metrics.episodes)
        rates = (
            (self.recent_wins, metrics.win_rate),
            (self.recent_seats[0], metrics.first_seat_win_rate),
            (self.recent_seats[1], metrics.second_seat_win_rate),
            (self.recent_draws, metrics.draw_rate),
            (self.recent_rewarded, metrics.rewarded_fraction),
        )
        for window, rate in rates:
            # An update without the rate (none finished, or not a zero-sum game) still ages it.
            window.add(rate, 0 if math.isnan(rate) else metrics.episodes)

    def recent_stats(self) -> dict[str, str]:
        """What the recent episodes say, by short name (the bar's postfix): the return, or
        in a zero-sum game each seat's wins and the draws; the win rate where the env
        reports wins; the rewarded episodes where the return reads 0."""
        stats: dict[str, str] = {}
        if self.recent_draws.episodes:  # a zero-sum game: the mean return says nothing
            for seat, window in enumerate(self.recent_seats, 1):
                if window.episodes:
                    stats[f"seat{seat}_wins"] = window.text()
            others = 1.0 - sum(w.mean for w in (*self.recent_seats, self.recent_draws))
            if self.recent_seats[1].episodes and others >= 0.005:  # more than two seats
                stats["others_win"] = f"{others:.2f}"
            stats["draws"] = self.recent_draws.text()
        else:
            stats["ret"] = self.recent.text()
        if self.recent_wins.episodes:
            stats["win"] = self.recent_wins.text()
        sparse = self.recent_rewarded.episodes and abs(self.recent.mean) < 0.005  # reads 0.00
        if sparse and not self.recent_draws.episodes:
            stats["rewarded"] = self.recent_rewarded.text()
        return stats

    def close(self) -> None:
        """Close the bar, or print the last summary line."""
        if self._bar is not None:
            self._bar.close()
        elif self._lines and self.env_steps > self._line_steps:
            self._summary_line()

    def _summary_line(self) -> None:
        now = time.monotonic()
        rate = (self.env_steps - self._line_steps) / max(now - self._line_time, 1e-9)
        elapsed = round(now - self._start)
        self.write(
            f"env steps {self.env_steps:,} / {self.total:,} "
            f"({100 * self.env_steps / self.total:.1f} %), {rate:,.0f} steps/s, "
            + f"{self.recent_text()}, "
            + f"elapsed {elapsed // 3600}:{elapsed // 60 % 60:02d}:{elapsed % 60:02d}"
        )
        self._line_time, self._line_steps = now, self.env_steps

    def recent_text(self) -> str:
        """`recent_stats` as the summary line words them: "recent return -3.10", or "seat 1
        wins 0.62, seat 2 wins 0.31, draws 0.07", and so on."""
        words = {
            "ret": "recent return {}",
            "seat1_wins": "seat 1 wins {}",
            "seat2_wins": "seat 2 wins {}",
            "others_win": "other seats win {}",
            "draws": "draws {}",
            "win": "win rate {}",
            "rewarded": "rewarded episodes {}",
        }
        return ", ".join(words[name].format(value) for name, value in self.recent_stats().items())
