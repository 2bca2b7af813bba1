"""Feeds of a token set: one feeds dict {input name: array} per grid of the set (FeedGroups when there are several;
their shapes differ, so every consumer runs each group's arrays on their own)."""

import numpy as np


class FeedGroups(list):
    """Feeds of a token set on several grids: [(indices of the images in the set, feeds dict of those images)], one
    entry per grid, in the set's grid order. Every consumer runs each group's arrays on their own."""


def feed_groups(feeds) -> list[tuple[np.ndarray, dict]]:
    """(indices, feeds) per grid group; a plain feeds dict is one group of all its samples."""
    if isinstance(feeds, FeedGroups):
        return list(feeds)
    return [(np.arange(len(next(iter(feeds.values())))), feeds)]


def grouped(groups: list) -> "dict | FeedGroups":
    """A feeds dict for one group, FeedGroups for several."""
    return groups[0][1] if len(groups) == 1 else FeedGroups(groups)


def num_samples(feeds) -> int:
    return sum(len(idx) for idx, _ in feed_groups(feeds))


def largest_group(feeds) -> dict:
    """The feeds of one grid: a feeds dict as is, else the most numerous group's (latency and per-layer drift are
    measured on one input shape)."""
    return max(feed_groups(feeds), key=lambda g: len(g[0]))[1]


def head(feeds, n: int):
    """The first `n` samples, group by group."""
    out, left = [], n
    for idx, f in feed_groups(feeds):
        if left > 0:
            out.append((idx[:left], {k: v[:left] for k, v in f.items()}))
            left -= len(idx)
    return out[0][1] if not isinstance(feeds, FeedGroups) else FeedGroups(out)
