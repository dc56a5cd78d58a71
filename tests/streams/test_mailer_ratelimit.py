"""Per-domain token buckets, on a clock the test moves."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.ratelimit import DomainRateLimiter, parse_rate_limits
from streams.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_settings_read_domain_rates() -> None:
    settings = Settings(mailer_rate_limits="Gmail.com=20, *=100,example.org=0.5")
    assert settings.mailer_rate_limits == {"gmail.com": 20.0, "*": 100.0, "example.org": 0.5}
    assert Settings(mailer_rate_limits='{"gmail.com": 5}').mailer_rate_limits == {"gmail.com": 5}


@pytest.mark.parametrize("value", ["gmail.com", "gmail.com=0", "gmail.com=-1", "=5", "x=fast"])
def test_bad_rates_are_refused(value: str) -> None:
    with pytest.raises(ValidationError, match="mailer_rate_limits"):
        Settings(mailer_rate_limits=value)


def test_parse_leaves_other_values_to_the_model() -> None:
    assert parse_rate_limits({"a.example": 1}) == {"a.example": 1}


def test_a_domain_takes_its_own_rate_then_a_parents_then_the_default() -> None:
    limiter = DomainRateLimiter({"example.com": 5, "*": 50})
    assert limiter.rate_of("example.com") == ("example.com", 5)
    assert limiter.rate_of("EU.Example.com") == ("example.com", 5)
    assert limiter.rate_of("other.org") == ("*", 50)
    assert DomainRateLimiter({"example.com": 5}).rate_of("other.org") is None


def test_a_burst_of_one_second_then_one_token_per_interval() -> None:
    clock = Clock()
    limiter = DomainRateLimiter({"example.com": 4}, clock=clock)
    assert [limiter.reserve("example.com") for _ in range(4)] == [0, 0, 0, 0]
    waits = [limiter.reserve("example.com") for _ in range(3)]
    assert waits == pytest.approx([0.25, 0.5, 0.75])
    clock.now += 1.0  # the three reserved tokens are earned, nothing more
    assert limiter.reserve("example.com") == pytest.approx(0.0)
    assert limiter.reserve("example.com") == pytest.approx(0.25)


def test_slow_rates_space_every_message() -> None:
    clock = Clock()
    limiter = DomainRateLimiter({"*": 0.5}, clock=clock)
    assert limiter.reserve("a.example") == 0
    assert limiter.reserve("a.example") == pytest.approx(2.0)


def test_each_domain_under_the_default_has_its_own_bucket() -> None:
    limiter = DomainRateLimiter({"*": 1, "example.com": 1}, clock=Clock())
    assert limiter.reserve("a.example") == 0
    assert limiter.reserve("b.example") == 0
    assert limiter.reserve("example.com") == 0
    assert limiter.reserve("sub.example.com") > 0  # shares example.com's bucket
    assert limiter.reserve("a.example") > 0


def test_unlimited_domains_never_wait() -> None:
    limiter = DomainRateLimiter({"gmail.com": 1}, clock=Clock())
    assert {limiter.reserve("example.com") for _ in range(100)} == {0}
