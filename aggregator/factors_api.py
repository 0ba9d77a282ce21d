"""The public seed API of published factors: list, search, dataset, versions, ILCD and JSON-LD downloads.

``GET /api/v1/factors/{id}/versions`` gives every version's ``cohort_size``: how many certified firms
it was computed from, never who (the aggregator refuses versions whose cohorts would difference,
``aggregator.cohorts``).

Filters of ``GET /api/v1/factors`` (all optional, combined with AND; only each factor's newest
version is listed):

* ``industry``: a GB/T 4754-2017 code prefix. ``32`` finds ``3216``; a section letter (``C``)
  finds every division of the section (``C`` = divisions 13-43); a letter before digits is
  ignored (``C3216`` = ``3216``).
* ``region``: exact ISO 3166 code, case-insensitive: ``CN-YN`` finds the Yunnan factors and
  ``CN`` the national ones. With ``include_subregions=true`` ``CN`` also finds ``CN-YN``,
  ``CN-YN-KM``...: a sub-national factor is another product average, so it is opt-in.
* ``product``: the product's reference flow UUID or the factor id, or text contained in the
  product name (either language).
* ``q``: synonym search (:class:`lca.synonyms.SynonymIndex`) over the product names, in Chinese
  or English, with abbreviations, full-width characters and subscripts (``铝``, ``aluminum``,
  ``原铝``, ``ＣＯ₂``).
* ``lang``: ``zh`` or ``en`` turns ``name`` into a string in that language; without it ``name``
  is ``{"zh": ..., "en": ...}``.

The routes are thin: the filtering is :func:`filter_factors`, the exports
:func:`lca.io.ilcd.write_ilcd` and :func:`lca.io.jsonld.write_jsonld` of
:func:`protocols.factor.factor_bundle`. Errors answer :class:`aggregator.errors.ErrorBody`.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from aggregator.errors import AggregatorError, BadRequest, ErrorBody, NotFound
from aggregator.repository import FactorRepository
from lca.io.ilcd import write_ilcd
from lca.io.jsonld import write_jsonld
from lca.model import Bundle
from lca.synonyms import SynonymIndex, normalise
from protocols.factor import (
    FactorError,
    LocalName,
    PublishedFactor,
    factor_bundle,
    revision_of,
)

__all__ = [
    "INDUSTRY_PATTERN",
    "SECTIONS",
    "VERSION_PATTERN",
    "FactorSummary",
    "FactorVersion",
    "filter_factors",
    "industry_matches",
    "parse_version",
    "region_matches",
    "router_factory",
    "summarise",
]

#: GB/T 4754-2017 sections and their divisions (first two digits of a code).
SECTIONS: dict[str, tuple[int, int]] = {
    "A": (1, 5), "B": (6, 12), "C": (13, 43), "D": (44, 46), "E": (47, 50), "F": (51, 52), "G": (53, 60),
    "H": (61, 62), "I": (63, 65), "J": (66, 69), "K": (70, 70), "L": (71, 72), "M": (73, 75), "N": (76, 79),
    "O": (80, 82), "P": (83, 83), "Q": (84, 85), "R": (86, 90), "S": (91, 97), "T": (98, 98),
}  # fmt: skip

_CODE_RE = re.compile(r"^([A-Ta-t])?([0-9]*)$")

#: What ``industry`` accepts (besides surrounding spaces), declared in the OpenAPI schema; checked by
#: :func:`industry_matches` so that a mismatch answers 400 with a message rather than FastAPI's 422.
INDUSTRY_PATTERN = r"^([A-Ta-t][0-9]*|[0-9]+)?$"

_MAX_REVISION = 100_000
"""The newest revision an ILCD version ``01.NN.NNN`` can name (``01.99.999``)."""

#: What ``version`` accepts: a revision number 1-100000 or an ILCD version (see :func:`parse_version`).
VERSION_PATTERN = r"^(0*([1-9][0-9]{0,4}|100000)|01\.[0-9]{2}\.[0-9]{3})$"


class FactorSummary(BaseModel):
    """One row of the factor list."""

    factor_id: str
    version: str
    name: LocalName | str
    """``{"zh", "en"}``, or a string in the requested ``lang``."""
    unit: str
    """E.g. ``kgCO2e/t``."""
    value: float
    validity_period: str
    """ISO 8601 interval of days, e.g. ``2025-01-01/2025-12-31``."""
    data_source: str
    n_participants: int
    dqr: float | None
    region: str
    industry: str
    """GB/T 4754-2017 code of the product."""
    library_level: str
    gwp_set: str
    reference_unit: str


class FactorVersion(BaseModel):
    """One published version of a factor."""

    version: str
    revision: int
    published_at: str
    value: float
    unit: str
    round_id: str
    n_participants: int
    cohort_size: int | None
    """How many certified firms' values this version's sums hold (``aggregator.cohorts``); ``null`` for a
    version published before cohorts were recorded. Who they are is not published."""


def summarise(factor: PublishedFactor, lang: Literal["zh", "en"] | None = None) -> FactorSummary:
    """The list row of ``factor``."""
    return FactorSummary(
        factor_id=factor.factor_id,
        version=factor.version,
        name=factor.name.get(lang) if lang else factor.name,
        unit=factor.unit,
        value=factor.value,
        validity_period=str(factor.validity_period),
        data_source=factor.data_source,
        n_participants=factor.n_participants,
        dqr=factor.dqr,
        region=factor.region,
        industry=factor.classification.code,
        library_level=factor.library_level,
        gwp_set=factor.gwp_set,
        reference_unit=factor.reference_unit,
    )


def industry_matches(code: str, query: str) -> bool:
    """Whether GB/T 4754 ``code`` falls under ``query`` (a code prefix or a section letter, see the module docstring).

    Raises
    ------
    BadRequest
        When ``query`` is neither a section letter nor digits (optionally after a letter).
    """
    m = _CODE_RE.match(query.strip())
    if m is None or not (m.group(1) or m.group(2)):
        raise BadRequest(
            f"industry {query!r}: accepted: a GB/T 4754-2017 section letter A-T and/or a code prefix, "
            "e.g. 'C', '32', '3216'"
        )
    letter, digits = (m.group(1) or "").upper(), m.group(2)
    code_m = _CODE_RE.match(code.strip())
    code_digits = code_m.group(2) if code_m else code
    if digits:
        return code_digits.startswith(digits)
    lo, hi = SECTIONS[letter]
    code_letter = (code_m.group(1) or "").upper() if code_m else ""
    if len(code_digits) >= 2:
        return lo <= int(code_digits[:2]) <= hi
    return code_letter == letter


def region_matches(region: str, query: str, include_subregions: bool = False) -> bool:
    """Exact (case-insensitive) region match; with ``include_subregions`` also every finer region below ``query``."""
    r, q = region.strip().upper(), query.strip().upper()
    return r == q or (include_subregions and r.startswith(q + "-"))


def _product_index(factors: Sequence[PublishedFactor]) -> SynonymIndex:
    index = SynonymIndex()
    for f in factors:
        names: list[str] = [f.name.zh, f.name.en]
        flow = next((fl for fl in f.flows if fl.uuid == f.product_flow), None)
        if flow is not None:
            index.add_flow(flow)
        index.add(f.product_flow, names)
    return index


def filter_factors(
    factors: Sequence[PublishedFactor],
    *,
    industry: str | None = None,
    region: str | None = None,
    include_subregions: bool = False,
    product: str | None = None,
    q: str | None = None,
    library_level: str | None = None,
    index: SynonymIndex | None = None,
) -> list[PublishedFactor]:
    """The factors matching every given filter (see the module docstring), in the order given.

    ``q`` results keep the synonym index's ranking (exact names first). ``index`` is the
    product-name index of ``factors`` when the caller caches it.
    """
    out = list(factors)
    if industry:
        out = [f for f in out if industry_matches(f.classification.code, industry)]
    if region:
        out = [f for f in out if region_matches(f.region, region, include_subregions)]
    if library_level:
        out = [f for f in out if f.library_level == library_level]
    if product:
        key = product.strip().lower()
        text = normalise(product)
        out = [
            f
            for f in out
            if key in (f.product_flow, f.factor_id)
            or (text and (text in normalise(f.name.zh) or text in normalise(f.name.en)))
        ]
    if q:
        index = index or _product_index(factors)
        rank = {u: i for i, u in enumerate(index.search(q))}
        out = sorted((f for f in out if f.product_flow in rank), key=lambda f: rank[f.product_flow])
    return out


def parse_version(version: str) -> int:
    """A factor version given as ILCD ``01.00.002`` or as a revision number ``3``, as the revision number.

    Raises
    ------
    BadRequest
        When it is neither.
    """
    text = version.strip()
    if text.isascii() and text.isdigit():
        # Length first: int() of thousands of digits is slow, then refused (ValueError).
        digits = text.lstrip("0")
        if digits and len(digits) <= len(str(_MAX_REVISION)) and int(digits) <= _MAX_REVISION:
            return int(digits)
    else:
        try:
            return revision_of(text)
        except FactorError:
            pass
    raise BadRequest(
        f"version {version[:40]!r}: accepted: an ILCD version like '01.00.000' "
        f"or a revision number from 1 to {_MAX_REVISION}"
    )


def _error(exc: AggregatorError) -> JSONResponse:
    return JSONResponse(status_code=exc.status_code, content=exc.body().model_dump())


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    text = {400: "Malformed filter or version", 404: "No such factor or version"}
    return {c: {"model": ErrorBody, "description": text[c]} for c in codes}


_VERSION_QUERY: Any = Query(
    None,
    description="ILCD version '01.00.001' or revision number (1 is the first publication)",
    json_schema_extra={"pattern": VERSION_PATTERN},
)

_ZIP_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}, "description": "A zip"}
}


def _zip(bundle: Bundle, writer: Callable[[Bundle, Path], None], filename: str) -> Response:
    with tempfile.TemporaryDirectory(prefix="pcf-factor-") as tmp:
        path = Path(tmp) / filename
        writer(bundle, path)
        data = path.read_bytes()
    return Response(
        content=data,
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


class _IndexCache:
    """The product-name index of the latest factor list, rebuilt when the list changes."""

    def __init__(self) -> None:
        self._key: tuple[tuple[str, str], ...] | None = None
        self._index: SynonymIndex | None = None

    def get(self, factors: Iterable[PublishedFactor]) -> SynonymIndex:
        factors = list(factors)
        key = tuple((f.factor_id, f.version) for f in factors)
        if self._index is None or key != self._key:
            self._index, self._key = _product_index(factors), key
        return self._index


def router_factory(repo: FactorRepository, settings: object | None = None) -> APIRouter:
    """The seed API router over ``repo``; ``settings`` is accepted for symmetry with the PACT router and unused."""
    router = APIRouter(prefix="/api/v1/factors", tags=["factors"])
    cache = _IndexCache()

    def lookup(factor_id: str, version: str | None) -> PublishedFactor:
        revision = parse_version(version) if version is not None else None
        factor = repo.get_factor(factor_id.strip().lower(), revision)
        if factor is None:
            what = f"factor {factor_id!r}" + (f" version {version!r}" if version is not None else "")
            raise NotFound(f"{what} is not published; GET /api/v1/factors lists the published factors")
        return factor

    @router.get(
        "",
        response_model=list[FactorSummary],
        responses=_responses(400),
        summary="List and search published factors",
    )
    def list_factors(
        industry: str | None = Query(
            None,
            description="GB/T 4754-2017 code prefix or section letter, e.g. '32', 'C'",
            json_schema_extra={"pattern": INDUSTRY_PATTERN},
        ),
        region: str | None = Query(None, description="ISO 3166 code, e.g. 'CN' or 'CN-YN' (exact)"),
        include_subregions: bool = Query(False, description="With region: also the regions below it"),
        product: str | None = Query(None, description="Product flow UUID, factor id, or text in the product name"),
        q: str | None = Query(None, description="Synonym search in Chinese or English, e.g. '铝', 'aluminum'"),
        library_level: Literal["core", "industry", "regional"] | None = Query(None),
        lang: Literal["zh", "en"] | None = Query(None, description="Return names in this language only"),
    ) -> Any:
        factors = repo.list_factors(latest_only=True)
        try:
            found = filter_factors(
                factors,
                industry=industry,
                region=region,
                include_subregions=include_subregions,
                product=product,
                q=q,
                library_level=library_level,
                index=cache.get(factors) if q else None,
            )
        except AggregatorError as exc:
            return _error(exc)
        return [summarise(f, lang) for f in found]

    @router.get(
        "/{factor_id}",
        response_model=PublishedFactor,
        responses=_responses(400, 404),
        summary="The full factor dataset (newest version, or ?version=)",
    )
    def get_factor(
        factor_id: str,
        version: str | None = _VERSION_QUERY,
    ) -> Any:
        try:
            return lookup(factor_id, version)
        except AggregatorError as exc:
            return _error(exc)

    @router.get(
        "/{factor_id}/versions",
        response_model=list[FactorVersion],
        responses=_responses(404),
        summary="Every published version of a factor with its cohort size, oldest first",
    )
    def versions(factor_id: str) -> Any:
        found = repo.versions(factor_id.strip().lower())
        if not found:
            return _error(NotFound(f"factor {factor_id!r} is not published"))
        sizes = repo.cohort_sizes(found[0].factor_id)
        return [
            FactorVersion(
                version=f.version,
                revision=f.revision,
                published_at=f.published_at.isoformat().replace("+00:00", "Z"),
                value=f.value,
                unit=f.unit,
                round_id=f.provenance.round_id,
                n_participants=f.n_participants,
                cohort_size=sizes.get(f.revision),
            )
            for f in found
        ]

    @router.get(
        "/{factor_id}/ilcd",
        response_class=Response,
        responses={**_ZIP_RESPONSE, **_responses(400, 404)},
        summary="The factor's industry-average unit process as an ILCD zip",
    )
    def ilcd(factor_id: str, version: str | None = _VERSION_QUERY) -> Response:
        try:
            factor = lookup(factor_id, version)
        except AggregatorError as exc:
            return _error(exc)
        return _zip(factor_bundle(factor), write_ilcd, f"factor_{factor.factor_id}_{factor.version}_ilcd.zip")

    @router.get(
        "/{factor_id}/jsonld",
        response_class=Response,
        responses={**_ZIP_RESPONSE, **_responses(400, 404)},
        summary="The factor's industry-average unit process as an openLCA JSON-LD zip",
    )
    def jsonld(factor_id: str, version: str | None = _VERSION_QUERY) -> Response:
        try:
            factor = lookup(factor_id, version)
        except AggregatorError as exc:
            return _error(exc)
        return _zip(factor_bundle(factor), write_jsonld, f"factor_{factor.factor_id}_{factor.version}_jsonld.zip")

    return router
