"""A document's money: each line's net, tax and total, rounded half-up to cents, and the sums."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from activities.services.documents.errors import InvalidDocumentData

CENT = Decimal("0.01")


@dataclass(frozen=True)
class LineTotal:
    name: str
    quantity: Decimal
    unit_price: Decimal
    tax_rate: Decimal
    net: Decimal
    tax: Decimal
    total: Decimal


@dataclass(frozen=True)
class Totals:
    lines: tuple[LineTotal, ...]
    subtotal: Decimal
    tax: Decimal
    total: Decimal


def to_decimal(value: Any, where: str) -> Decimal:
    if value is None or isinstance(value, bool):
        raise InvalidDocumentData(f"{where}: a number is required")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidDocumentData(f"{where}: {value!r} is not a number") from None
    if not number.is_finite():
        raise InvalidDocumentData(f"{where}: {value!r} is not a finite number")
    return number


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def format_money(value: Decimal) -> str:
    return f"{value:.2f}"


def format_plain(value: Decimal) -> str:
    """A quantity or rate without trailing zeros: 2, 0.5, 23, 8.5."""
    return format(value.normalize(), "f")


def line_total(line: Mapping[str, Any], index: int) -> LineTotal:
    where = f"lines[{index}]"
    if not isinstance(line, Mapping):
        raise InvalidDocumentData(f"{where}: an object with name, quantity, unit_price, tax_rate is required")
    name = str(line.get("name") or "").strip()
    if not name:
        raise InvalidDocumentData(f"{where}.name: a name is required")
    quantity = to_decimal(line.get("quantity"), f"{where}.quantity")
    unit_price = to_decimal(line.get("unit_price"), f"{where}.unit_price")
    tax_rate = to_decimal(line.get("tax_rate", 0), f"{where}.tax_rate")
    if not Decimal(0) <= tax_rate <= Decimal(100):
        raise InvalidDocumentData(f"{where}.tax_rate: {format_plain(tax_rate)} is not between 0 and 100")
    net = money(quantity * unit_price)
    tax = money(net * tax_rate / Decimal(100))
    return LineTotal(name, quantity, unit_price, tax_rate, net, tax, net + tax)


def compute_totals(lines: Sequence[Mapping[str, Any]]) -> Totals:
    """Per-line net, tax and total rounded half-up to cents, and their sums."""
    computed = tuple(line_total(line, i) for i, line in enumerate(lines))
    subtotal = sum((line.net for line in computed), Decimal("0.00"))
    tax = sum((line.tax for line in computed), Decimal("0.00"))
    return Totals(computed, subtotal, tax, subtotal + tax)
