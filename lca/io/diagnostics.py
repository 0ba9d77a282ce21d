"""The findings of every reader: one Diagnostic type, one set of rule names, one per-file reporter."""

# The ILCD, JSON-LD and enterprise-template readers, the import validation (lca.validate) and
# the node's import all report through this module, so that a rule name means one thing
# whatever the format: a person filtering an import report by ``non-finite-number`` sees the
# NaN of a template row, of an ILCD meanAmount and of a JSON-LD amount alike.

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from lca.errors import Diagnostic

__all__ = [
    "Diagnostic",
    "Reporter",
    "Rule",
    "Severity",
    "SourceMap",
    "show",
]

Severity = Literal["error", "warning", "info"]


class Rule(StrEnum):
    """The rule names of :attr:`Diagnostic.rule`, for every format.

    Format-specific rules say so in their name (``xsd-deviation``, ``jsonld-...``); the others
    mean the same in a template row, an ILCD element and a JSON-LD path.
    """

    # ---- the source as a whole
    MISSING_FILE = "missing-file"
    """The file or folder does not exist."""
    UNKNOWN_FORMAT = "unknown-format"
    """No reader recognises the file (accepted: template .csv/.xlsx, ILCD or JSON-LD zip/folder)."""
    UNREADABLE_FILE = "unreadable-file"
    """The file cannot be opened: not a zip, not a workbook, not UTF-8, an OS error."""
    UNPARSABLE_FILE = "unparsable-file"
    """The file opens but is not well-formed (XML, JSON)."""
    MISSING_SECTION = "missing-section"
    """A template lacks its ``process`` or ``exchanges`` section / sheet."""
    XSD_DEVIATION = "xsd-deviation"
    """ILCD: the data deviate from the ILCD 1.1 XSDs and are read regardless (warning)."""
    JSONLD_VERSION = "jsonld-version"
    """JSON-LD: ``olca-schema.json`` names an unknown schema version."""
    JSONLD_V1_LAYOUT = "jsonld-v1-layout"
    """JSON-LD: the openLCA 1.x layout was detected (info)."""
    JSONLD_V1_KEYS = "jsonld-v1-keys"
    """JSON-LD: v1 keys inside a v2 layout."""

    # ---- one dataset
    UNEXPECTED_TYPE = "unexpected-type"
    """The dataset type (ILCD root element, JSON-LD ``@type``) is not the one its folder holds."""
    MISSING_UUID = "missing-uuid"
    """The dataset has no UUID / ``@id``."""
    ID_MISMATCH = "id-mismatch"
    """JSON-LD: ``@id`` differs from the file name."""
    DUPLICATE_UUID = "duplicate-uuid"
    """Two datasets share a UUID (an error when their content differs)."""
    INVALID_VERSION = "invalid-version"
    """Not a dataset version like ``01.00.000``."""
    INVALID_DATASET = "invalid-dataset"
    """The dataset (or one exchange of it) does not satisfy the data model; it is skipped."""

    # ---- one field
    MISSING_FIELD = "missing-field"
    """A required field, column, element or attribute is absent or empty."""
    UNKNOWN_FIELD = "unknown-field"
    """A template field or column that the template does not define."""
    INVALID_VALUE = "invalid-value"
    """A value outside what the field accepts (the message says what is accepted)."""
    UNPARSABLE_NUMBER = "unparsable-number"
    """A number field holds something that is not a number."""
    NON_FINITE_NUMBER = "non-finite-number"
    """A number field holds NaN or an infinity: refused everywhere."""
    NUMBER_AS_STRING = "number-as-string"
    """JSON-LD: a number written as a JSON string; read as the number (warning)."""
    UNKNOWN_UNIT = "unknown-unit"
    """A unit that is not in the unit group of the flow property, so the amount cannot be converted."""
    UNKNOWN_LOCATION = "unknown-location"
    """A location code that the data's location list lacks."""
    UNRESOLVED_REFERENCE = "unresolved-reference"
    """A reference names a dataset, exchange or unit that is not in the data."""
    MISSING_INTERNAL_ID = "missing-internal-id"
    """Exchanges without an internal id; numbered by position."""
    DUPLICATE_INTERNAL_ID = "duplicate-internal-id"
    """JSON-LD: two exchanges of a process share an ``internalId``."""

    # ---- units and flow properties
    NO_UNITS = "no-units"
    """A unit group without any usable unit."""
    REFERENCE_UNIT = "reference-unit"
    """A unit group marks no unit, or several units, as reference."""
    NO_FLOW_PROPERTY = "no-flow-property"
    """A flow without any usable flow property."""
    REFERENCE_FLOW_PROPERTY = "reference-flow-property"
    """A flow marks no or several flow properties as reference."""
    DUPLICATE_FLOW_PROPERTY = "duplicate-flow-property"
    """A flow lists one flow property twice."""
    FLOW_PROPERTY_NOT_ON_FLOW = "flow-property-not-on-flow"
    """An exchange names a flow property its flow does not have."""

    # ---- processes, allocation, data quality, LCIA
    MISSING_REFERENCE_FLOW = "missing-reference-flow"
    """A process without a usable quantitative reference."""
    ALLOCATION_METHOD = "allocation-method"
    """JSON-LD: allocation factors of another than the default method are dropped."""
    ALLOCATION_PRODUCT = "allocation-product"
    """JSON-LD: an allocation factor names a product the process does not have."""
    ALLOCATION_EXCHANGE = "allocation-exchange"
    """JSON-LD: a causal allocation factor names no exchange of the process."""
    UNKNOWN_DQ_INDICATOR = "unknown-dq-indicator"
    """JSON-LD: a data quality system indicator that is not recognised."""
    DQ_ORDER_ASSUMED = "dq-order-assumed"
    """JSON-LD: dqEntry read in openLCA's default indicator order (info)."""
    CATEGORY_PATH_SHALLOW = "category-path-shallow"
    """JSON-LD: v1 category references resolved to their last segment only (info)."""
    LCIA_SKIPPED = "lcia-skipped"
    """JSON-LD: impact categories other than climate change are not read (info)."""

    # ---- import validation (lca.validate)
    MISSING_FLOW = "missing-flow"
    """An exchange names a flow that is neither in the import nor in the store."""
    NEGATIVE_AMOUNT = "negative-amount"
    """A negative amount where it is not allowed (a warning where it reads as a credit)."""
    MASS_BALANCE = "mass-balance"
    """Mass inputs and outputs differ by more than the tolerance (warning)."""
    ANOMALY = "anomaly"
    """An exchange moved by more than the threshold against the previous version (warning)."""


def show(value: object) -> str | None:
    """The text a diagnostic gives for ``value``: strings as they are, anything else as JSON (cut at 200)."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False)[:200]
    except (TypeError, ValueError):
        return repr(value)[:200]


@dataclass
class Reporter:
    """The findings of one file; each names the file, the location (row, XPath or JSON path), field and value."""

    file: str | None
    out: list[Diagnostic]

    def report(
        self,
        severity: Severity,
        rule: Rule,
        message: str,
        location: str | None = None,
        field: str | None = None,
        value: object = None,
    ) -> None:
        self.out.append(
            Diagnostic(
                severity=severity,
                rule=rule.value,
                message=message,
                file=self.file,
                location=location or None,
                field=field,
                value=show(value),
            )
        )

    def error(self, rule: Rule, message: str, location: str | None = None, field: str | None = None,
              value: object = None) -> None:
        self.report("error", rule, message, location, field, value)

    def warn(self, rule: Rule, message: str, location: str | None = None, field: str | None = None,
             value: object = None) -> None:
        self.report("warning", rule, message, location, field, value)

    def info(self, rule: Rule, message: str, location: str | None = None, field: str | None = None,
             value: object = None) -> None:
        self.report("info", rule, message, location, field, value)

    def non_finite(self, location: str | None, field: str, value: object, severity: Severity = "error") -> None:
        """Refuse NaN or an infinity in a number field (the same message in every format)."""
        self.report(severity, Rule.NON_FINITE_NUMBER,
                    f"{field!r} is {show(value)}; accepted: a finite number (NaN and infinities are refused)",
                    location, field, value)


@dataclass
class SourceMap:
    """Where each dataset and exchange came from (file, location), for messages that point back to the input."""

    datasets: dict[str, tuple[str, str]] = field(default_factory=dict)
    exchanges: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def merge(self, other: SourceMap) -> None:
        self.datasets.update(other.datasets)
        self.exchanges.update(other.exchanges)
