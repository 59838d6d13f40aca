"""Country choices and emergency numbers come from content and agree with each other."""

from __future__ import annotations

from bot.countries import all_countries, emergency_number, emergency_numbers


def test_every_offered_country_has_an_emergency_number() -> None:
    numbers = emergency_numbers()
    missing = [c.code for c in all_countries() if c.code not in numbers]
    assert missing == []


def test_unknown_country_falls_back_to_the_study_number() -> None:
    assert emergency_number(country_code="US", default="112") == "911"
    assert emergency_number(country_code="ZZ", default="112") == "112"
    assert emergency_number(country_code=None, default="112") == "112"
