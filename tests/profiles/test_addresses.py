from __future__ import annotations

import pytest

from profiles import InvalidAddress, ProfileError, mask_address, normalise_address


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        (" Ann@Example.COM ", "Ann@example.com"),  # trimmed, domain lowercased, local part kept
        ("\tann@example.com\n", "ann@example.com"),
        ("ann@Bücher.DE", "ann@xn--bcher-kva.de"),  # IDNA: the ASCII form is stored
        ("ann@xn--bcher-kva.de", "ann@xn--bcher-kva.de"),
        ("first.last+tag@shop.example", "first.last+tag@shop.example"),
        # a non-ASCII local part has no ASCII form: kept as given (SMTPUTF8), domain encoded
        ("Jörg@Bücher.de", "Jörg@xn--bcher-kva.de"),
    ],
)
def test_addresses_are_trimmed_and_their_domain_lowercased_and_idna_encoded(
    raw: str, stored: str
) -> None:
    assert normalise_address(raw) == stored


@pytest.mark.parametrize(
    "raw",
    [
        "not an email",
        "a@b",
        "",
        "   ",
        "@example.com",
        "ann@",
        "ann@@example.com",
        "ann..x@example.com",
        "Ann <ann@example.com>",  # a display name is not an address
        "ann@[127.0.0.1]",
        "ann@shop.test",  # a special-use domain never receives mail
    ],
)
def test_what_is_not_an_address_is_rejected_with_the_reason(raw: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        normalise_address(raw)
    assert str(caught.value)
    assert isinstance(caught.value, ProfileError)
    assert isinstance(caught.value, ValueError)  # pydantic validators report it


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("alice@example.com", "a***@example.com"),
        ("Jörg@xn--bcher-kva.de", "J***@xn--bcher-kva.de"),
        (" ann@example.com ", "a***@example.com"),
        # what profile_update rejected: still only the first character and the domain
        ("ann@@example.com", "a***@example.com"),
        ("Ann <ann@example.com>", "A***@example.com>"),
        ("not an email", "n***"),
        ('{"a": 1}', "{***"),
        ("@example.com", "***@example.com"),
        ("", "***"),
    ],
)
def test_a_masked_address_shows_its_first_character_and_domain(value: str, masked: str) -> None:
    assert mask_address(value) == masked
