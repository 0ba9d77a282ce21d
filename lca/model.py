"""The LCA data model: the eight modules of the 2025 guideline as plain pydantic models."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from protocols.canonical import Kind, digest

__all__ = [
    "DEFAULT_VERSION",
    "Bundle",
    "CharacterisationFactor",
    "Classification",
    "Contact",
    "DataQuality",
    "Dataset",
    "Exchange",
    "Flow",
    "FlowProperty",
    "FlowPropertyFactor",
    "I18n",
    "LCIAMethod",
    "LifeCycleModel",
    "ModelLink",
    "Process",
    "Source",
    "Uncertainty",
    "Unit",
    "UnitGroup",
    "bump_version",
    "dataset_kind",
]

DEFAULT_VERSION = "01.00.000"
_VERSION_RE = re.compile(r"^\d{1,2}\.\d{1,2}(\.\d{1,3})?$")

#: Text in several languages, keyed by ISO 639-1 code ("en", "zh", ...).
I18n = dict[str, str]

Direction = Literal["input", "output"]
FlowType = Literal["elementary", "product", "waste"]
DataSourceType = Literal["primary", "secondary"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=False)


class Classification(_Model):
    """One classification of a dataset: a system and a code or a category path.

    ``system`` is e.g. ``"GB/T 4754-2017"``, ``"ISIC Rev.5"``, ``"CPC"``, ``"ILCD"``;
    ``code`` the code (``"3216"``) when the system has codes; ``path`` the category
    path from the root when the system is hierarchical by name.
    """

    system: str
    code: str | None = None
    path: list[str] = Field(default_factory=list)


class DataQuality(_Model):
    """Data quality indicators on the 1 (best) to 5 (worst) scale."""

    technological: int | None = Field(default=None, ge=1, le=5)
    geographical: int | None = Field(default=None, ge=1, le=5)
    temporal: int | None = Field(default=None, ge=1, le=5)
    completeness: int | None = Field(default=None, ge=1, le=5)
    precision: int | None = Field(default=None, ge=1, le=5)

    def indicators(self) -> dict[str, int]:
        return {k: v for k, v in self.model_dump().items() if v is not None}

    def dqr(self) -> float | None:
        """The data quality rating of the PEF Guide (2013, eq. 2) over the given indicators.

        DQR = (sum of the indicators + 4 * the worst indicator) / (number of indicators + 4).
        The worst indicator is weighted four times so that one poor indicator cannot be
        averaged away. ``None`` when no indicator is given.
        """
        values = list(self.indicators().values())
        if not values:
            return None
        return (sum(values) + 4 * max(values)) / (len(values) + 4)

    def dqr_level(self) -> str | None:
        """The PEF quality level of :meth:`dqr`."""
        value = self.dqr()
        if value is None:
            return None
        if value <= 1.6:
            return "excellent"
        if value <= 2.0:
            return "very good"
        if value <= 3.0:
            return "good"
        if value <= 4.0:
            return "fair"
        return "poor"


class Dataset(_Model):
    """What every dataset of every module carries."""

    uuid: str
    version: str = DEFAULT_VERSION
    name: I18n = Field(default_factory=dict)
    description: I18n = Field(default_factory=dict)
    classifications: list[Classification] = Field(default_factory=list)

    @field_validator("uuid")
    @classmethod
    def _lower_uuid(cls, value: str) -> str:
        return value.strip().lower()

    @field_validator("version")
    @classmethod
    def _check_version(cls, value: str) -> str:
        value = value.strip()
        if not _VERSION_RE.match(value):
            raise ValueError(f"version {value!r} is not an ILCD version like '01.00.000'")
        return value

    def display_name(self, lang: str = "en") -> str:
        return self.name.get(lang) or next(iter(self.name.values()), self.uuid)

    def content_hash(self) -> str:
        """SHA-256 of the canonical encoding (``Kind.DATASET``) of the content, version excluded."""
        return digest(Kind.DATASET, self.model_dump(mode="json", exclude={"version"}))


class Unit(_Model):
    name: str
    factor: float
    """How many reference units one of this unit is."""
    description: I18n = Field(default_factory=dict)


class UnitGroup(Dataset):
    units: list[Unit] = Field(default_factory=list)
    reference_unit: str

    def factor(self, unit: str) -> float | None:
        for u in self.units:
            if u.name == unit:
                return u.factor
        return None


class FlowProperty(Dataset):
    unit_group: str
    """UUID of the unit group."""


class FlowPropertyFactor(_Model):
    flow_property: str
    """UUID of the flow property."""
    factor: float = 1.0
    """How many of this property one reference-property unit of the flow carries."""
    reference: bool = False


class Flow(Dataset):
    flow_type: FlowType
    cas: str | None = None
    formula: str | None = None
    compartment: list[str] = Field(default_factory=list)
    """For elementary flows: the category path, e.g. ["Emissions", "Emissions to air"]."""
    synonyms: dict[str, list[str]] = Field(default_factory=dict)
    properties: list[FlowPropertyFactor] = Field(default_factory=list)
    location: str | None = None

    def reference_property(self) -> str | None:
        for p in self.properties:
            if p.reference:
                return p.flow_property
        return self.properties[0].flow_property if self.properties else None


class Uncertainty(_Model):
    """A distribution of an exchange amount (ILCD / openLCA vocabulary)."""

    distribution: Literal["lognormal", "normal", "triangular", "uniform", "undefined"]
    geomean: float | None = None
    geosd: float | None = None
    """Geometric standard deviation (lognormal)."""
    sd: float | None = None
    minimum: float | None = None
    mode: float | None = None
    maximum: float | None = None
    relative_sd_percent: float | None = None


class Exchange(_Model):
    internal_id: str
    flow: str
    """UUID of the flow."""
    direction: Direction
    amount: float
    unit: str
    """Unit name, one of the flow property's unit group."""
    flow_property: str | None = None
    """UUID of the flow property the amount is in; the flow's reference property when None."""
    data_source: DataSourceType | None = None
    uncertainty: Uncertainty | None = None
    allocation: dict[str, float] = Field(default_factory=dict)
    """Allocation factor (0..1) per reference exchange internal_id, for multi-output processes."""
    provider: str | None = None
    """UUID of the provider process, when the data names one."""
    comment: I18n = Field(default_factory=dict)
    location: str | None = None
    data_quality: DataQuality | None = None
    """Data quality of this exchange (openLCA ``dqEntry`` on an exchange), when the data gives one."""


class Process(Dataset):
    process_type: Literal["unit", "lci_result"] = "unit"
    location: str | None = None
    sub_location: str | None = None
    reference_year: int | None = None
    valid_until: int | None = None
    reference_exchanges: list[str] = Field(default_factory=list)
    """internal_ids of the quantitative reference exchanges."""
    exchanges: list[Exchange] = Field(default_factory=list)
    data_quality: DataQuality = Field(default_factory=DataQuality)
    sources: list[str] = Field(default_factory=list)
    contacts: list[str] = Field(default_factory=list)
    technology: I18n = Field(default_factory=dict)
    annual_production: float | None = None
    """Annual production in reference units, for weighting in aggregation rounds."""

    def exchange(self, internal_id: str) -> Exchange | None:
        for e in self.exchanges:
            if e.internal_id == internal_id:
                return e
        return None

    def reference_exchange(self) -> Exchange | None:
        for rid in self.reference_exchanges:
            found = self.exchange(rid)
            if found is not None:
                return found
        return None


class CharacterisationFactor(_Model):
    flow: str
    value: float
    flow_property: str | None = None
    unit: str | None = None
    direction: Direction | None = None
    """Whether the factor applies to the flow as an input or an output (ILCD ``exchangeDirection``)."""
    species: str | None = None
    """Greenhouse gas the flow is (a key of ``lca.gwp.SPECIES``: "CO2", "CH4", "HFC134a", ...)."""
    origin: Literal["fossil", "biogenic", "land_use"] | None = None
    """Carbon origin of the factor, for the fossil / biogenic / land-use split of footprints."""


class LCIAMethod(Dataset):
    indicator: str = "climate change"
    reference_unit: str = "kg CO2 eq"
    gwp_set: str | None = None
    """E.g. "AR5", "AR6": the IPCC report whose GWP100 the factors use."""
    reference_property: str | None = None
    """UUID of the flow property the indicator is expressed in (ILCD ``referenceQuantity``)."""
    factors: list[CharacterisationFactor] = Field(default_factory=list)


class Source(Dataset):
    citation: str | None = None
    url: str | None = None


class Contact(Dataset):
    email: str | None = None
    url: str | None = None
    address: I18n = Field(default_factory=dict)


class ModelLink(_Model):
    provider: str
    """UUID of the providing process."""
    flow: str
    recipient: str
    """UUID of the receiving process."""


class LifeCycleModel(Dataset):
    reference_process: str
    processes: list[str] = Field(default_factory=list)
    links: list[ModelLink] = Field(default_factory=list)
    location: str | None = None


_KINDS: dict[type[Dataset], str] = {
    Process: "process",
    Flow: "flow",
    FlowProperty: "flow_property",
    UnitGroup: "unit_group",
    LCIAMethod: "lcia_method",
    Source: "source",
    Contact: "contact",
    LifeCycleModel: "model",
}
KIND_TYPES: dict[str, type[Dataset]] = {v: k for k, v in _KINDS.items()}


def dataset_kind(ds: Dataset) -> str:
    """The module name of a dataset: process, flow, flow_property, ..."""
    return _KINDS[type(ds)]


def bump_version(version: str) -> str:
    """The next ILCD version: ``01.00.000`` -> ``01.00.001`` (the last part counts up)."""
    parts = version.split(".")
    while len(parts) < 3:
        parts.append("000")
    major, minor, sub = parts
    nxt = int(sub) + 1
    if nxt > 999:
        return f"{major}.{int(minor) + 1:02d}.000"
    return f"{major}.{minor}.{nxt:03d}"


class Bundle(_Model):
    """A set of datasets, as read from one import source or written to one export."""

    processes: dict[str, Process] = Field(default_factory=dict)
    flows: dict[str, Flow] = Field(default_factory=dict)
    flow_properties: dict[str, FlowProperty] = Field(default_factory=dict)
    unit_groups: dict[str, UnitGroup] = Field(default_factory=dict)
    methods: dict[str, LCIAMethod] = Field(default_factory=dict)
    sources: dict[str, Source] = Field(default_factory=dict)
    contacts: dict[str, Contact] = Field(default_factory=dict)
    models: dict[str, LifeCycleModel] = Field(default_factory=dict)

    def collection(self, kind: str) -> dict[str, Dataset]:
        return {
            "process": self.processes,
            "flow": self.flows,
            "flow_property": self.flow_properties,
            "unit_group": self.unit_groups,
            "lcia_method": self.methods,
            "source": self.sources,
            "contact": self.contacts,
            "model": self.models,
        }[kind]  # type: ignore[return-value]

    def all(self) -> list[Dataset]:
        out: list[Dataset] = []
        for kind in KIND_TYPES:
            out.extend(self.collection(kind).values())
        return out

    def add(self, ds: Dataset) -> None:
        self.collection(dataset_kind(ds))[ds.uuid] = ds

    def merge(self, other: Bundle) -> None:
        for ds in other.all():
            self.add(ds)

    def counts(self) -> dict[str, int]:
        return {kind: len(self.collection(kind)) for kind in KIND_TYPES}
