"""Requisite fields per template and their formats: which fields a contact's or company's requisites have,
how each value is checked and normalized, and how an address reads as one line.

Pure (no database): used by the save-time checks and by the requisite rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

TEMPLATES = ("organization", "sole_proprietor", "individual")
ADDRESS_TYPES = ("legal", "actual", "other")

MAX_VALUE_LENGTH = 255


class InvalidRequisite(ValueError):
    """A requisite value that does not fit its field; the message says what is expected."""


def _compact(value: str) -> str:
    return re.sub(r"[\s\-./]", "", value).upper()


def _text(value: str) -> str:
    text = " ".join(value.split())
    if len(text) > MAX_VALUE_LENGTH:
        raise InvalidRequisite(f"at most {MAX_VALUE_LENGTH} characters")
    return text


def _pattern(pattern: str, expected: str, *, compact: bool = True) -> Callable[[str], str]:
    regex = re.compile(pattern)

    def check(value: str) -> str:
        normalized = _compact(value) if compact else " ".join(value.split())
        if not regex.fullmatch(normalized):
            raise InvalidRequisite(expected)
        return normalized

    return check


def _iban(value: str) -> str:
    iban = _compact(value)
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}", iban):
        raise InvalidRequisite("an IBAN: country code, two check digits and 11 to 30 letters or digits")
    digits = "".join(str(int(ch, 36)) for ch in iban[4:] + iban[:4])
    if int(digits) % 97 != 1:
        raise InvalidRequisite("an IBAN with valid check digits")
    return iban


def _iso_date(value: str) -> str:
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        raise InvalidRequisite("a date (YYYY-MM-DD)") from None


_EMAIL = _pattern(r"[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+", "an e-mail address", compact=False)
_PHONE = _pattern(r"\+?[0-9][0-9 ()\-.]{2,48}", "a phone number such as +48 601 234 567", compact=False)
_COMPANY_TAX_ID = _pattern(
    r"(?:[A-Z]{2})?[0-9]{8,15}", "a company tax id: 8 to 15 digits, optionally after a two-letter country code"
)
_PERSONAL_TAX_ID = _pattern(r"[A-Z0-9]{6,16}", "a personal tax id: 6 to 16 letters or digits")
_VAT_ID = _pattern(r"[A-Z]{2}[0-9A-Z]{2,13}", "a VAT id: a two-letter country code and 2 to 13 letters or digits")
_REGISTRATION = _pattern(r"[0-9A-Z]{3,30}", "a registration number: 3 to 30 letters or digits")
_PASSPORT = _pattern(r"[A-Z0-9]{5,20}", "a passport number: 5 to 20 letters or digits")
_ZIP = _pattern(r"[0-9A-Za-z][0-9A-Za-z \-]{1,9}", "a postal code: 2 to 10 letters, digits, spaces or dashes",
                compact=False)
_SWIFT = _pattern(r"[A-Z]{6}[A-Z0-9]{2}(?:[A-Z0-9]{3})?", "a SWIFT/BIC code of 8 or 11 characters")
_ACCOUNT = _pattern(r"[0-9A-Z]{4,34}", "a bank account number: 4 to 34 letters or digits")
_BANK_CODE = _pattern(r"[0-9A-Z]{2,20}", "a bank code: 2 to 20 letters or digits")

Check = Callable[[str], str]

_PERSON: dict[str, Check] = {"first_name": _text, "last_name": _text}
_CONTACTS: dict[str, Check] = {"email": _EMAIL, "phone": _PHONE}

FIELDS: dict[str, dict[str, Check]] = {
    "organization": {
        "name": _text, "tax_id": _COMPANY_TAX_ID, "registration_number": _REGISTRATION, "vat_id": _VAT_ID,
        "director": _text, **_CONTACTS,
    },
    "sole_proprietor": {
        "name": _text, **_PERSON, "tax_id": _COMPANY_TAX_ID, "registration_number": _REGISTRATION,
        "vat_id": _VAT_ID, **_CONTACTS,
    },
    "individual": {
        **_PERSON, "tax_id": _PERSONAL_TAX_ID, "passport": _PASSPORT, "birth_date": _iso_date, **_CONTACTS,
    },
}
"""The requisite fields of each template, with their checks."""

ADDRESS_FIELDS: dict[str, Check] = {
    "street": _text, "city": _text, "zip": _ZIP, "region": _text, "country": _text,
}
BANK_FIELDS: dict[str, Check] = {
    "bank_name": _text, "bank_account": _ACCOUNT, "bank_code": _BANK_CODE, "iban": _iban, "swift": _SWIFT,
}


def field_check(template: str, key: str) -> Check:
    """The check of a `change_requisites` key (`tax_id`, `address.city`, `bank.iban`) for the template;
    raises KeyError with the message naming what is known."""
    group, _, name = key.rpartition(".")
    known = {"": FIELDS[template], "address": ADDRESS_FIELDS, "bank": BANK_FIELDS}.get(group)
    if known is None or name not in known:
        if group == "address":
            where = "an address field"
        elif group == "bank":
            where = "a bank field"
        else:
            where = f"a field of {template} requisites"
        choices = ", ".join(known if known is not None else FIELDS[template])
        raise KeyError(f"{key!r} is not {where} (known: {choices})")
    return known[name]


def check_value(template: str, key: str, value: Any) -> Any:
    """The value to store for `key`: normalized, or None to remove the field. Raises InvalidRequisite."""
    check = field_check(template, key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidRequisite(f"{value!r} is not a text")
    text = format(value, "f").rstrip("0").rstrip(".") if isinstance(value, float) else str(value)
    try:
        return check(text.strip())
    except InvalidRequisite as error:
        raise InvalidRequisite(f"{text.strip()!r} is not {error}") from None


def format_address(address: Mapping[str, Any] | None) -> str:
    """One line: "street, zip city, region, country" (missing parts left out)."""
    if not address:
        return ""

    def part(name: str) -> str:
        value = address.get(name)
        return str(value).strip() if value is not None else ""

    town = " ".join(p for p in (part("zip"), part("city")) if p)
    known = ("street", "zip", "city", "region", "country")
    others = [str(v).strip() for k, v in address.items() if k not in known and v not in (None, "")]
    return ", ".join(p for p in (part("street"), town, part("region"), part("country"), *others) if p)


def display_name(fields: Mapping[str, Any], fallback: str | None = None) -> str:
    """The requisites' name: the name field, else first and last name, else the party's own name."""
    name = str(fields.get("name") or "").strip()
    if name:
        return name
    person = " ".join(str(fields.get(k) or "").strip() for k in ("first_name", "last_name")).strip()
    return person or (fallback or "")
