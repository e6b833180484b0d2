"""Personal-data detection and the privacy filter: under ``gateway.privacy: local-only`` a request
that contains personal data goes only to ``local`` models.

Why not Presidio: it needs spaCy and a language model download for a handful of rules. Here each
rule is a tested pattern that finds *candidates*, confirmed by a validator from a well-kept library
wherever the identifier has one, so random digit runs do not fire:

=================  =====================================================================
rule               how it is confirmed
=================  =====================================================================
``email``          RFC-5322-ish pattern (local part, ``@``, a dotted domain with a TLD)
``phone``          ``phonenumbers`` (libphonenumber) matcher, leniency VALID: numbers in
                   international form (``+44 ...``) anywhere, national forms of
                   :data:`PHONE_REGIONS`
``card``           13-19 digits (spaces/dashes allowed), a card-network prefix and the Luhn
                   checksum (``stdnum.luhn``)
``iban``           ``stdnum.iban`` (country length + ISO 7064 mod 97-10)
``ssn_us``         ``123-45-6789`` form, ``stdnum.us.ssn`` (no 000/666/9xx areas etc.)
``nir_fr``         French social-security number, ``stdnum.fr.nir`` (mod-97 key)
``dni_es``         Spanish DNI, ``stdnum.es.dni`` (check letter)
``cf_it``          Italian codice fiscale, ``stdnum.it.codicefiscale`` (check character)
``idnr_de``        German tax id, ``stdnum.de.idnr`` (ISO 7064 mod 11-10)
``aadhaar_in``     Indian Aadhaar in 4-4-4 form, ``stdnum.in_.aadhaar`` (Verhoeff)
=================  =====================================================================

:func:`detect` returns :class:`Finding` objects holding the rule name and the span only; the
matched text is never stored, logged or put in a report.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sizewise.catalog.schema import ModelSpec
from sizewise.policy.types import FilterReport, RequestContext, RequestRejected

#: Regions whose national phone formats are recognised (international ``+`` numbers always are).
PHONE_REGIONS = ("US", "GB", "DE", "FR")

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_SSN = re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])")
_NIR = re.compile(r"(?<!\d)[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?!\d)")
_DNI = re.compile(r"\b\d{8}-?[A-Za-z]\b")
_CF = re.compile(r"\b[A-Za-z]{6}\d{2}[A-Za-z]\d{2}[A-Za-z]\d{3}[A-Za-z]\b")
_IDNR = re.compile(r"(?<!\d)\d{2} ?\d{3} ?\d{3} ?\d{3}(?!\d)")
_AADHAAR = re.compile(r"(?<!\d)[2-9]\d{3}[ -]\d{4}[ -]\d{4}(?!\d)")
_CARD_PREFIX = re.compile(r"^(?:4|5[1-5]|2[2-7]|3[47]|3[068]|6(?:011|5|4[4-9])|35)")


@dataclass(frozen=True)
class Finding:
    """One piece of personal data: which rule fired and where (never the text itself)."""

    rule: str
    start: int
    end: int


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _valid_card(match: str) -> bool:
    from stdnum import luhn

    digits = _digits(match)
    return 13 <= len(digits) <= 19 and bool(_CARD_PREFIX.match(digits)) and luhn.is_valid(digits)


def _stdnum(module: str) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        import importlib

        return bool(importlib.import_module(f"stdnum.{module}").is_valid(value))

    return check


# (rule, pattern, validator): order matters only for overlap resolution (first rule wins a span).
_RULES: list[tuple[str, re.Pattern[str], Callable[[str], bool]]] = [
    ("email", _EMAIL, lambda _: True),
    ("iban", _IBAN, _stdnum("iban")),
    ("card", _CARD, _valid_card),
    ("ssn_us", _SSN, _stdnum("us.ssn")),
    ("nir_fr", _NIR, _stdnum("fr.nir")),
    ("dni_es", _DNI, _stdnum("es.dni")),
    ("cf_it", _CF, _stdnum("it.codicefiscale")),
    ("aadhaar_in", _AADHAAR, _stdnum("in_.aadhaar")),
    ("idnr_de", _IDNR, _stdnum("de.idnr")),
]
RULES = (*(rule for rule, _, _ in _RULES), "phone")


def _phones(text: str, regions: Iterable[str]) -> list[Finding]:
    import phonenumbers

    found: dict[tuple[int, int], Finding] = {}
    for region in regions:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            found.setdefault((match.start, match.end), Finding("phone", match.start, match.end))
    return list(found.values())


def detect(
    text: str, rules: Iterable[str] | None = None, phone_regions: Iterable[str] = PHONE_REGIONS
) -> list[Finding]:
    """Personal data in ``text``, sorted by position; ``rules`` restricts which rules run."""
    wanted = set(RULES if rules is None else rules)
    unknown = wanted - set(RULES)
    if unknown:
        raise ValueError(f"unknown privacy rules: {', '.join(sorted(unknown))}")
    findings: list[Finding] = []
    taken: list[tuple[int, int]] = []
    has_digits = sum(ch.isdigit() for ch in text) >= 7  # every number rule needs at least 7 digits
    for rule, pattern, valid in _RULES:
        if rule not in wanted or (rule != "email" and not has_digits):
            continue
        for match in pattern.finditer(text):
            span = match.span()
            if any(span[0] < end and start < span[1] for start, end in taken):
                continue
            if valid(match.group()):
                findings.append(Finding(rule, *span))
                taken.append(span)
    if "phone" in wanted and has_digits:
        for finding in _phones(text, phone_regions):
            if not any(finding.start < end and start < finding.end for start, end in taken):
                findings.append(finding)
    return sorted(findings, key=lambda f: f.start)


def contains_personal_data(text: str) -> bool:
    """True when :func:`detect` finds anything."""
    return bool(detect(text))


class PrivacyFilter:
    """Under ``local-only``: a request with personal data may reach only ``local`` models.

    The report names the rules that fired (e.g. ``email, iban``), never the data.
    """

    name = "privacy"

    def __init__(self, rules: Iterable[str] | None = None, phone_regions: Iterable[str] = PHONE_REGIONS) -> None:
        self.rules = tuple(RULES if rules is None else rules)
        self.phone_regions = tuple(phone_regions)

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        report = FilterReport(self.name)
        if all(spec.location == "local" for spec in candidates):
            return candidates, report  # nothing to protect against: skip the scan
        findings = detect(ctx.text, self.rules, self.phone_regions)
        if not findings:
            return candidates, report
        fired = sorted({f.rule for f in findings})
        ctx.extras["privacy_rules"] = fired
        report.note = f"personal data detected ({', '.join(fired)}): local models only"
        kept = []
        for spec in candidates:
            if spec.location == "local":
                kept.append(spec)
            else:
                report.removed[spec.name] = f"remote model; personal data ({', '.join(fired)})"
        if ctx.model_field in report.removed:
            # The client named a remote model: refuse with the reason rather than re-route behind its back.
            raise RequestRejected(
                400,
                f"this request contains personal data ({', '.join(fired)}) and model {ctx.model_field!r} is remote; "
                "the privacy policy (local-only) allows only local models: name a local model or use 'sizewise'",
                "privacy_remote_model",
                param="model",
            )
        if not kept:
            raise RequestRejected(
                400,
                f"this request contains personal data ({', '.join(fired)}) and no local model can serve it",
                "privacy_no_local_model",
                param="messages",
            )
        return kept, report
