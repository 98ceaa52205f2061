"""The palette stays readable for colour-blind readers and in grayscale."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from colorspacious import cspace_convert

from mlgrind.palette import KINDS, ROLES
from mlgrind.ref.notation import LETTERS

SIMULATIONS = [None, "deuteranomaly", "protanomaly", "tritanomaly"]


def rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])


def seen_as(colours: list[str], cvd: str | None) -> np.ndarray:
    """Colours in CAM02-UCS, as a reader with full (severity 100) `cvd` sees them."""
    srgb = np.array([rgb(c) for c in colours])
    if cvd is not None:
        space = {"name": "sRGB1+CVD", "cvd_type": cvd, "severity": 100}
        srgb = np.clip(cspace_convert(srgb, space, "sRGB1"), 0, 1)
    return cspace_convert(srgb, "sRGB1", "CAM02-UCS")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("cvd", SIMULATIONS)
def test_roles_of_a_kind_stay_apart_for_colour_blind_readers(kind: str, cvd: str | None) -> None:
    roles = [r for r in ROLES.values() if r.kind == kind]
    points = seen_as([r.colour for r in roles], cvd)
    for (a, pa), (b, pb) in itertools.combinations(zip(roles, points), 2):
        # ~15 ΔE is clearly different at a glance; 2-3 is a just-noticeable difference.
        assert np.linalg.norm(pa - pb) >= 15, (cvd, a.name, b.name)


@pytest.mark.parametrize("kind", KINDS)
def test_roles_of_a_kind_differ_without_colour(kind: str) -> None:
    roles = [r for r in ROLES.values() if r.kind == kind]
    assert len({r.cue for r in roles}) == len(roles)
    assert len({r.glyph for r in roles}) == len(roles)


def test_text_colours_are_dark_enough_for_small_print() -> None:
    # WCAG relative luminance; 3:1 against white is the floor for bold small text on paper.
    def luminance(c: str) -> float:
        channel = rgb(c)
        linear = np.where(channel <= 0.03928, channel / 12.92, ((channel + 0.055) / 1.055) ** 2.4)
        return float(linear @ [0.2126, 0.7152, 0.0722])

    for role in ROLES.values():
        assert (1.05) / (luminance(role.colour) + 0.05) >= 3, role.name
        if role.name != "key":  # the key role keeps dark text on its highlight
            assert (luminance(role.night) + 0.05) / (luminance("#1e1e1e") + 0.05) >= 4.5, role.name


def test_every_notation_letter_has_a_dimension_role() -> None:
    for entry in LETTERS.values():
        assert ROLES[entry.family].kind == "dimension"
