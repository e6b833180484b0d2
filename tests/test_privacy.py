"""Personal-data detection: each rule fires on valid identifiers and stays quiet on look-alikes."""

from __future__ import annotations

import pytest

from sizewise.policy.constraints.privacy import RULES, Finding, detect


def rules(text: str) -> list[str]:
    return [f.rule for f in detect(text)]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("write to jane.doe+tag@example.co.uk today", "email"),
        ("call me on +44 20 7946 0958 after six", "phone"),
        ("our office: (650) 253-0000", "phone"),
        ("card 4111 1111 1111 1111 exp 12/29", "card"),
        ("amex 3782-822463-10005", "card"),
        ("IBAN DE89 3704 0044 0532 0130 00 please", "iban"),
        ("iban GB82WEST12345698765432", "iban"),
        ("ssn 123-45-6789", "ssn_us"),
        ("NIR 2 95 10 99 126 111 93", "nir_fr"),
        ("DNI 12345678Z", "dni_es"),
        ("codice fiscale RCCMNL83S18D969H", "cf_it"),
        ("Steuer-ID 36 574 261 809", "idnr_de"),
    ],
)
def test_each_rule_fires(text: str, rule: str) -> None:
    assert rule in rules(text)


@pytest.mark.parametrize(
    "text",
    [
        "What is 12 * 345 + 6789?",
        "card 4111 1111 1111 1112",  # Luhn fails
        "IBAN DE89 3704 0044 0532 0130 01",  # mod-97 fails
        "ssn 000-45-6789",  # area 000 is never issued
        "DNI 12345678A",  # wrong check letter
        "Order #1234567890123 shipped in 2024",  # 13 digits, no card prefix/Luhn
        "user at example dot com",
        "The year 1969 and the number 3.14159265358979",
    ],
)
def test_look_alikes_do_not_fire(text: str) -> None:
    assert rules(text) == []


def test_findings_hold_spans_not_data() -> None:
    text = "mail a@b.io and pay DE89370400440532013000"
    found = detect(text)
    assert [f.rule for f in found] == ["email", "iban"]
    assert text[found[0].start : found[0].end] == "a@b.io"
    assert "a@b.io" not in repr(found) and set(Finding.__dataclass_fields__) == {"rule", "start", "end"}


def test_rule_selection_and_unknown_rule() -> None:
    text = "a@b.io 4111111111111111"
    assert rules(text) == ["email", "card"]
    assert [f.rule for f in detect(text, rules=["card"])] == ["card"]
    assert "phone" in RULES
    with pytest.raises(ValueError, match="unknown privacy rules"):
        detect(text, rules=["dna"])
