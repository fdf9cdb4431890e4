"""Learning a copy's duration from the copies read midway (shared/domain/copytime.py)."""

from __future__ import annotations

import random

import pytest

from shared.domain.copytime import CopyRate, CopySample, fitted, whole_duration


def test_nothing_learned_gives_no_rate() -> None:
    assert fitted([]) is None


def test_a_fixed_part_and_a_rate_are_recovered_from_copies_of_several_sizes() -> None:
    rate = fitted([CopySample(gib, 60 + 20 * gib) for gib in (0.5, 1.0, 4.0, 2.5)])
    assert rate is not None
    assert rate.base == pytest.approx(60)
    assert rate.per_gib == pytest.approx(20)


def test_copies_of_one_size_give_their_slowest_time() -> None:
    assert fitted([CopySample(1.0, 70), CopySample(1.0, 90)]) == CopyRate(90, 0.0)


def test_no_sample_lies_above_the_line_so_no_copy_like_them_is_read_early() -> None:
    rng = random.Random(3)
    samples = [CopySample(g, (60 + 20 * g) * rng.uniform(0.9, 1.1)) for g in range(1, 12)]
    rate = fitted(samples)
    assert rate is not None
    assert all(rate.first_read(s.gib) > s.seconds for s in samples)
    # ...and late by no more than the noise (10 % either way: 1.1 / 0.9) and the margin
    assert all(rate.first_read(s.gib) <= s.seconds * 1.1 / 0.9 * 1.02 + 5 for s in samples)


def test_a_copy_that_moved_far_more_than_its_change_does_not_delay_the_next_reads() -> None:
    samples = [CopySample(g, 60 + 20 * g) for g in (1.0, 2.0, 4.0, 3.0)]
    outlier = CopySample(1.0, 20 * (60 + 20 * 32.0))  # its whole disk moved, 20 times over
    rate = fitted([*samples, outlier])
    assert rate is not None
    assert all(rate.first_read(s.gib) <= s.seconds * 1.2 + 5 for s in samples)


def test_a_negative_slope_from_noise_is_read_as_flat() -> None:
    rate = fitted([CopySample(1.0, 100), CopySample(2.0, 90)])
    assert rate == CopyRate(100, 0.0)


def test_the_first_read_comes_just_after_the_expected_end() -> None:
    rate = CopyRate(base=60, per_gib=20)
    assert rate.first_read(2.0) == pytest.approx(100 + 5)  # the 5 s floor over 2 %
    assert rate.first_read(50.0) == pytest.approx(1060 * 1.02)


@pytest.mark.parametrize(
    ("elapsed", "percent", "whole"),
    [(30, 25.0, 120.0), (30, None, None), (30, 0.0, None), (30, 100.0, None), (0, 50.0, None)],
)
def test_a_copy_midway_states_its_whole_duration(
    elapsed: float, percent: float | None, whole: float | None
) -> None:
    assert whole_duration(elapsed, percent) == whole
