"""The per-file diagnostics of the ILCD reader and the parts every module reader shares."""

from __future__ import annotations

import math
from collections.abc import Iterable

from lxml.etree import _Element as Element

from lca.io.diagnostics import Reporter, Rule, Severity
from lca.io.ilcd.codec import (
    _ORDER,
    _UUID_RE,
    _VERSION_RE,
    COMMON_NS,
    PCF_NS,
    _canonical_version,
    _find,
    _findall,
    _i18n,
    _kid,
    _kids,
    _local,
    _text,
    _xpath,
)
from lca.model import Classification, I18n

# --------------------------------------------------------------------------- diagnostics

__all__: list[str] = []  # package-internal: lca.io.ilcd re-exports what is public


class _Ctx(Reporter):
    """The diagnostics of one file; a location is an element (reported as its XPath) or a text like ``line 3``."""

    def report(self, severity: Severity, rule: Rule, message: str, location: Element | str | None = None,
               field: str | None = None, value: object = None) -> None:
        where = location if location is None or isinstance(location, str) else _xpath(location)
        super().report(severity, rule, message, where, field, value)

    def warn(self, rule: Rule, message: str, location: Element | str | None = None, field: str | None = None,
             value: object = None) -> None:
        self.report("warning", rule, message, location, field, value)

    def error(self, rule: Rule, message: str, location: Element | str | None = None, field: str | None = None,
              value: object = None) -> None:
        self.report("error", rule, message, location, field, value)

    def number(self, el: Element | None, field: str, *, required: bool = False) -> float | None:
        """The float in ``el``; an error when it is not a number (or missing and required)."""
        text = _text(el)
        if text is None:
            if required:
                self.error(Rule.MISSING_FIELD, f"{field} is missing; a number is required", el, field, "")
            return None
        return self.parse_number(el, field, text)

    def parse_number(self, el: Element | None, field: str, text: str) -> float | None:
        """``text`` (of ``el`` or one of its attributes) as a finite float; an error diagnostic when it is not."""
        try:
            value = float(text)
        except ValueError:
            self.error(Rule.UNPARSABLE_NUMBER, f"{field} {text!r} is not a number (accepted: a decimal like 1.5 or 2e-3)",
                       el, field, text)
            return None
        if not math.isfinite(value):
            self.non_finite(_xpath(el) if el is not None else None, field, text)
            return None
        return value

    def integer(self, el: Element | None, field: str) -> int | None:
        text = _text(el)
        if text is None:
            return None
        try:
            return int(text)
        except ValueError:
            self.error(Rule.UNPARSABLE_NUMBER, f"{field} {text!r} is not an integer (accepted: a year like 2020)",
                       el, field, text)
            return None

    def check_order(self, el: Element | None, key: str) -> None:
        """Warn once per container when its children deviate from the ILCD 1.1 order or names."""
        if el is None:
            return
        order = _ORDER[key]
        rank = {name: i for i, name in enumerate(order)}
        last = -1
        last_name = ""
        for child in el:
            if not isinstance(child.tag, str):
                continue
            name = _local(child)
            if name not in rank:
                self.warn(Rule.XSD_DEVIATION, f"element {name!r} is not an ILCD 1.1 child of {_local(el)!r} "
                          f"(accepted: {', '.join(order)}); skipped", child, name, _text(child))
                continue
            if rank[name] < last:
                self.warn(Rule.XSD_DEVIATION, f"element {name!r} comes after {last_name!r}; ILCD 1.1 order is "
                          f"{', '.join(order)}; read regardless of order", child, name)
                return
            last, last_name = rank[name], name



# --------------------------------------------------------------------------- common parts


def _version(admin_root: Element, ctx: _Ctx) -> str:
    el = _find(admin_root, "administrativeInformation", "publicationAndOwnership", "dataSetVersion")
    raw = _text(el)
    if raw is None:
        ctx.warn(Rule.MISSING_FIELD, "common:dataSetVersion is missing; read as 01.00.000",
                 el if el is not None else admin_root, "dataSetVersion", "")
        return "01.00.000"
    m = _VERSION_RE.match(raw)
    if m is None:
        ctx.error(Rule.INVALID_VERSION, f"version {raw!r} is not an ILCD version (accepted: NN.NN.NNN like 01.00.000)",
                  el, "dataSetVersion", raw)
        return "01.00.000"
    version = _canonical_version(raw)
    if version != raw:
        ctx.warn(Rule.XSD_DEVIATION, f"version {raw!r} does not match the ILCD pattern NN.NN[.NNN]; read as {version!r}",
                 el, "dataSetVersion", raw)
    return version




def _uuid(info: Element | None, root: Element, ctx: _Ctx) -> str | None:
    el = _kid(info, "UUID")
    value = _text(el)
    if value is None:
        ctx.error(Rule.MISSING_UUID, "common:UUID is missing; the data set is skipped",
                  el if el is not None else (info if info is not None else root), "UUID", "")
        return None
    if not _UUID_RE.match(value):
        ctx.warn(Rule.XSD_DEVIATION, f"UUID {value!r} is not of the form 8-4-4-4-12 hex digits", el, "UUID", value)
    return value.lower()


def _level(el: Element) -> int:
    try:
        return int(el.get("level", "0"))
    except ValueError:
        return 0


def _classifications(info: Element | None) -> list[Classification]:
    out: list[Classification] = []
    for cl in _findall(info, "classificationInformation", "classification"):
        classes = sorted(_kids(cl, "class"), key=_level)
        path = [t for t in (_text(c) for c in classes) if t]
        code = classes[-1].get("classId") if classes else None
        if cl.get(f"{{{PCF_NS}}}codeOnly") == "true":
            path = []
        out.append(Classification(system=(cl.get("name") or "ILCD").strip(), code=code or None, path=path))
    return out


def _joined_name(name_el: Element | None, parts: list[str]) -> I18n:
    by_lang: dict[str, list[str]] = {}
    for part in parts:
        for lang, text in _i18n(_kids(name_el, part)).items():
            by_lang.setdefault(lang, []).append(text)
    return {lang: "; ".join(texts) for lang, texts in by_lang.items()}


def _refs(elements: Iterable[Element]) -> list[str]:
    out: list[str] = []
    for el in elements:
        ref = (el.get("refObjectId") or "").strip().lower()
        if ref and ref not in out:
            out.append(ref)
    return out


def _check_other_text(root: Element, ctx: _Ctx) -> None:
    for el in root.iter(f"{{{COMMON_NS}}}other"):
        if el.text and el.text.strip():
            ctx.warn(Rule.XSD_DEVIATION, "common:other holds text; ILCD allows only elements there; ignored",
                     el, "other", el.text.strip())


def _ext(el: Element | None, name: str) -> Element | None:
    """Our extension element ``pcf:name`` in the ``common:other`` child of ``el``."""
    other = _kid(el, "other")
    if other is None:
        return None
    return other.find(f"{{{PCF_NS}}}{name}")
