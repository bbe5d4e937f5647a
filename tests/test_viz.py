"""Masks that show on any colour: avseg.viz.draw_mask, which every picture of a mask uses."""

import numpy as np
import pytest

from avseg.viz import draw_mask, enlarge, nice_ticks, outline_of

BACKGROUND = (110, 125, 140)
OBJECT_COLOURS = {"red": (230, 60, 50), "pure red": (255, 40, 40), "white": (255, 255, 255), "black": (0, 0, 0)}
VISIBLE = 60
"""A drawn pixel counts as visible when one of its channels moved by at least this much (of 255)."""


def scene(colours, size=32):
    """A frame with one square object per colour on a flat background, and each object's pixels."""
    frame = np.full((size, size, 3), BACKGROUND, dtype=np.uint8)
    masks = []
    for k, colour in enumerate(colours):
        mask = np.zeros((size, size), dtype=bool)
        mask[4:12, 2 + 10 * k : 9 + 10 * k] = True
        frame[mask] = colour
        masks.append(mask)
    return frame, masks


def moved(drawn, frame):
    return np.abs(drawn.astype(int) - frame.astype(int)).max(-1)


def old_red_tint(frame, mask):
    """What avseg drew before: a fixed red tint at 0.5 and a white outline."""
    image = frame.astype(np.float32)
    image[mask] = 0.5 * image[mask] + 0.5 * np.array([255, 40, 40], dtype=np.float32)
    image[outline_of(mask)] = 255.0
    return image.astype(np.uint8)


@pytest.mark.parametrize("name", OBJECT_COLOURS)
def test_a_mask_shows_on_an_object_of_any_colour(name):
    frame, (mask,) = scene([OBJECT_COLOURS[name]])
    drawn = draw_mask(frame, mask)
    assert moved(drawn, frame)[mask].min() >= VISIBLE  # fill and outline, every pixel of the object
    assert (drawn[~mask] == frame[~mask]).all()  # nothing outside the mask changes
    assert (draw_mask(frame, np.zeros_like(mask)) == frame).all()


def test_the_visibility_check_catches_the_old_red_tint():
    """The check above fails on what avseg drew before, on a red and on a white object."""
    for name in ("red", "pure red", "white"):
        frame, (mask,) = scene([OBJECT_COLOURS[name]])
        assert moved(old_red_tint(frame, mask), frame)[mask].min() < VISIBLE, name


def test_each_object_gets_the_tint_far_from_its_own_colour():
    frame, (red, green) = scene([(230, 60, 50), (60, 190, 90)])
    drawn = draw_mask(frame, red | green, outline=0)
    assert tuple(drawn[red][0]) == (115, 158, 25)  # half way to green
    assert tuple(drawn[green][0]) == (158, 95, 172)  # half way to magenta
    striped = frame.copy()
    striped[red & (np.arange(32) % 2 == 0)[None, :]] = (120, 30, 25)  # a darker stripe: the object keeps one tint
    tinted = draw_mask(striped, red, alpha=1.0)
    assert (tinted[red] == (0, 255, 0)).all()


def test_outline_only_and_width():
    frame, (mask,) = scene([OBJECT_COLOURS["white"]])
    drawn = draw_mask(frame, mask, alpha=0.0, outline=2)
    edge = outline_of(mask, 2)
    assert edge.sum() == mask.sum() - (4 * 3)  # an 8x7 square keeps a 4x3 interior
    assert (drawn[mask & ~edge] == frame[mask & ~edge]).all() and (drawn[edge] == (0, 255, 0)).all()


def test_enlarge_is_nearest_neighbour():
    mask = np.array([[True, False], [False, True]])
    assert (enlarge(mask, 3) == np.kron(mask, np.ones((3, 3), dtype=bool))).all()
    assert nice_ticks(0.13) == pytest.approx([0, 0.05, 0.1, 0.15]) and nice_ticks(1.0) == pytest.approx([0, 0.25, 0.5, 0.75, 1.0])
