"""Personal-data detection and the privacy filter: under ``gateway.privacy: local-only`` a request
that contains personal data goes only to ``local`` models.

Why not Presidio: its default set-up downloads a spaCy model at start-up (no network here), and on a
blank spaCy pipeline it was 2-10x slower than these rules and missed SSNs (measured in
docs/constraints.md). Here each rule is a tested pattern that finds *candidates*, confirmed by a
validator from a well-kept library wherever the identifier has one, so random digit runs do not fire:

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

The filter reads everything a request would carry to an upstream, not only its text parts
(:mod:`.outbound`: every message field, tool calls and definitions, pass-through fields, URLs,
decoded data URLs and base64, NFKC-normalised). What it cannot read (images, audio, files) counts
as personal data unless ``gateway.privacy_opaque`` is ``allow``. The scan runs in a worker thread
(:meth:`PrivacyFilter.prepare`), so a long numeric prompt does not stall the event loop.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sizewise.catalog.schema import ModelSpec
from sizewise.core.chat import ChatRequest
from sizewise.core.decision import FilterReport, RequestRejected
from sizewise.policy.constraints.outbound import collect
from sizewise.policy.types import RequestContext

#: Regions whose national phone formats are recognised (international ``+`` numbers always are).
PHONE_REGIONS = ("US", "GB", "DE", "FR")

_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b")
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b", re.IGNORECASE)  # stdnum upper-cases
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


def _whole(valid: Callable[[str], bool]) -> Callable[[str], int]:
    """A validator of the whole match, as a length (0: not valid)."""
    return lambda match: len(match) if valid(match) else 0


def _iban_length(match: str) -> int:
    """Length of the longest valid IBAN that starts the match, ending at a space or the end.

    Case-insensitive matching lets the pattern run on into a following word ("... 00 please"), so
    shorter candidates are tried too.
    """
    from stdnum import iban

    ends = [len(match), *(i for i in range(len(match) - 1, 14, -1) if match[i] == " ")]
    return next((end for end in ends if iban.is_valid(match[:end])), 0)


# (rule, pattern, validator -> valid length): order matters only for overlap resolution (first rule wins a span).
_RULES: list[tuple[str, re.Pattern[str], Callable[[str], int]]] = [
    ("email", _EMAIL, len),
    ("iban", _IBAN, _iban_length),
    ("card", _CARD, _whole(_valid_card)),
    ("ssn_us", _SSN, _whole(_stdnum("us.ssn"))),
    ("nir_fr", _NIR, _whole(_stdnum("fr.nir"))),
    ("dni_es", _DNI, _whole(_stdnum("es.dni"))),
    ("cf_it", _CF, _whole(_stdnum("it.codicefiscale"))),
    ("aadhaar_in", _AADHAAR, _whole(_stdnum("in_.aadhaar"))),
    ("idnr_de", _IDNR, _whole(_stdnum("de.idnr"))),
]
RULES = (*(rule for rule, _, _ in _RULES), "phone")


def _phones(text: str, regions: Iterable[str], first_only: bool = False) -> list[Finding]:
    import phonenumbers

    found: dict[tuple[int, int], Finding] = {}
    for region in regions:
        for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID):
            found.setdefault((match.start, match.end), Finding("phone", match.start, match.end))
            if first_only:
                return list(found.values())
    return list(found.values())


def detect(
    text: str,
    rules: Iterable[str] | None = None,
    phone_regions: Iterable[str] = PHONE_REGIONS,
    *,
    first_only: bool = False,
) -> list[Finding]:
    """Personal data in ``text``, sorted by position; ``rules`` restricts which rules run.

    ``first_only``: each rule stops at its first finding, and the phone rule (by far the slowest:
    libphonenumber parses every digit group once per region) runs only when no other rule fired.
    """
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
            length = valid(match.group())
            if length:
                span = (span[0], span[0] + length)
                findings.append(Finding(rule, *span))
                taken.append(span)
                if first_only:
                    break
    if "phone" in wanted and has_digits and not (first_only and findings):
        for finding in _phones(text, phone_regions, first_only):
            if not any(finding.start < end and start < finding.end for start, end in taken):
                findings.append(finding)
                if first_only:
                    break
    return sorted(findings, key=lambda f: f.start)


@dataclass(frozen=True)
class Scan:
    """What a request carries: the rules that fired and what could not be read (never the data)."""

    rules: tuple[str, ...]
    opaque: tuple[str, ...]


def scan_request(
    request: ChatRequest, rules: Iterable[str] | None = None, phone_regions: Iterable[str] = PHONE_REGIONS
) -> Scan:
    """Scan every string ``request`` would carry upstream (see :mod:`.outbound`)."""
    out = collect(request)
    findings = detect("\n".join(out.texts), rules, phone_regions, first_only=True)
    if out.numbers and (rules is None or "card" in rules):
        findings += detect("\n".join(out.numbers), ["card"], first_only=True)
    return Scan(tuple(sorted({f.rule for f in findings})), tuple(sorted(out.opaque)))


#: Requests of this many characters or more are scanned one at a time (see :meth:`PrivacyFilter.prepare`).
LARGE_SCAN_CHARS = 16_000

#: Where :meth:`PrivacyFilter.prepare` leaves its scan for :meth:`PrivacyFilter.apply`.
_SCAN_KEY = "privacy_scan"
_UPSTREAM_TEXT = re.compile(r"(upstream answered \d{3}).*", re.DOTALL)


def redact_error(message: str) -> str:
    """An error message fit for the log when prompt text is not logged.

    An upstream's error body may quote the prompt, so it is dropped; personal data that the
    gateway's own words carry (a URL, a name) is replaced by its rule name.
    """
    message = _UPSTREAM_TEXT.sub(r"\1 (its text is not logged: log_text is off)", message)
    for finding in reversed(detect(message)):
        message = f"{message[: finding.start]}<{finding.rule}>{message[finding.end :]}"
    return message


class PrivacyFilter:
    """Under ``local-only``: a request with personal data may reach only ``local`` models.

    ``opaque``: ``personal`` (default) counts what the scan cannot read (images, audio, files) as
    personal data; ``allow`` lets it go to remote models. The report names the rules that fired
    (e.g. ``email, iban``) or what was unreadable, never the data.
    """

    name = "privacy"

    def __init__(
        self,
        rules: Iterable[str] | None = None,
        phone_regions: Iterable[str] = PHONE_REGIONS,
        opaque: str = "personal",
    ) -> None:
        if opaque not in ("personal", "allow"):
            raise ValueError(f"privacy_opaque must be 'personal' or 'allow', not {opaque!r}")
        self.rules = tuple(RULES if rules is None else rules)
        self.phone_regions = tuple(phone_regions)
        self.opaque = opaque
        self._large: ThreadPoolExecutor | None = None

    def scan(self, request: ChatRequest) -> Scan:
        """:func:`scan_request` with this filter's rules."""
        return scan_request(request, self.rules, self.phone_regions)

    async def prepare(self, ctx: RequestContext) -> None:
        """Scan in a worker thread before the filters run: a 100 KB prompt costs up to seconds of CPU.

        Large requests are scanned one at a time in this filter's own thread, so a burst of them
        competes with the event loop for the GIL through one thread only; small ones use the shared pool.
        """
        request = ctx.request
        if len(str(request.messages)) + len(str(request.extra)) < LARGE_SCAN_CHARS:
            ctx.extras[_SCAN_KEY] = await asyncio.to_thread(self.scan, request)
            return
        if self._large is None:
            self._large = ThreadPoolExecutor(max_workers=1, thread_name_prefix="privacy-scan")
        ctx.extras[_SCAN_KEY] = await asyncio.get_running_loop().run_in_executor(self._large, self.scan, request)

    def reasons(self, ctx: RequestContext) -> list[str]:
        """Why this request must stay local: rules that fired, then unreadable parts (if counted)."""
        found = ctx.extras.get(_SCAN_KEY)
        if not isinstance(found, Scan):
            found = self.scan(ctx.request)  # not prepared (a direct call): scan here
        reasons = list(found.rules)
        if self.opaque == "personal" and found.opaque:
            reasons.append(f"unreadable {' and '.join(found.opaque)}")
        return reasons

    def apply(self, ctx: RequestContext, candidates: list[ModelSpec]) -> tuple[list[ModelSpec], FilterReport]:
        report = FilterReport(self.name)
        if all(spec.location == "local" for spec in candidates):
            return candidates, report  # nothing to protect against
        reasons = self.reasons(ctx)
        if not reasons:
            return candidates, report
        fired = ", ".join(reasons)
        ctx.extras["privacy_rules"] = reasons
        report.note = f"personal data detected ({fired}): local models only"
        kept = []
        for spec in candidates:
            if spec.location == "local":
                kept.append(spec)
            else:
                report.removed[spec.name] = f"remote model; personal data ({fired})"
        if ctx.model_field in report.removed:
            # The client named a remote model: refuse with the reason rather than re-route behind its back.
            raise RequestRejected(
                400,
                f"this request contains personal data ({fired}) and model {ctx.model_field!r} is remote; "
                "the privacy policy (local-only) allows only local models: name a local model or use 'sizewise'",
                "privacy_remote_model",
                param="model",
            )
        if not kept:
            raise RequestRejected(
                400,
                f"this request contains personal data ({fired}) and no local model can serve it",
                "privacy_no_local_model",
                param="messages",
            )
        return kept, report
