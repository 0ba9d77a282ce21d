"""Read an ILCD zip or folder: gather the module files, parse them, run the module readers in order."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from lxml.etree import _Element as Element

from lca.errors import ImportFailed
from lca.io.diagnostics import Diagnostic, Reporter, Rule
from lca.io.ilcd.codec import _CJK_RE, _KIND_OF_FOLDER, _READ_ORDER, _ROOT, MODULE_NS, XML_LANG, _local
from lca.io.ilcd.datasets import (
    _read_contact,
    _read_flow,
    _read_flow_property,
    _read_method,
    _read_source,
    _read_unit_group,
)
from lca.io.ilcd.parsing import _check_other_text, _Ctx
from lca.io.ilcd.process import _read_model, _read_process
from lca.model import Bundle, Dataset, I18n

__all__ = ["read_ilcd", "read_locations"]


# --------------------------------------------------------------------------- input sources


@dataclass
class _Entry:
    kind: str
    name: str
    data: bytes


@dataclass
class _Input:
    entries: list[_Entry] = field(default_factory=list)
    locations: bytes | None = None
    locations_name: str | None = None


def _gather(path: Path, diags: list[Diagnostic]) -> _Input:
    """The module files of an ILCD zip or folder (module folders may sit under a top folder)."""
    found = _Input()
    if not path.exists():
        Reporter(str(path), diags).error(Rule.MISSING_FILE, "no such file or folder; an ILCD zip or folder is accepted")
        return found

    def take(parts: list[str], name: str, read: Callable[[], bytes]) -> None:
        if not parts[-1].lower().endswith(".xml"):
            return
        if parts[-1] == "ILCDLocations.xml":
            if found.locations is None:
                found.locations, found.locations_name = read(), name
            return
        if len(parts) >= 2 and parts[-2].lower() in _KIND_OF_FOLDER:
            found.entries.append(_Entry(_KIND_OF_FOLDER[parts[-2].lower()], name, read()))

    if path.is_dir():
        for file in sorted(path.rglob("*.xml")):
            parts = list(file.relative_to(path).parts)
            take(parts, str(file), file.read_bytes)
        return found
    try:
        with zipfile.ZipFile(path) as zf:
            for info in sorted(zf.infolist(), key=lambda i: i.filename):
                if info.is_dir():
                    continue
                parts = [p for p in info.filename.replace("\\", "/").split("/") if p]
                take(parts, f"{path}!{info.filename}", lambda info=info: zf.read(info))  # type: ignore[misc]
    except (zipfile.BadZipFile, OSError) as exc:
        Reporter(str(path), diags).error(Rule.UNREADABLE_FILE, f"not an ILCD zip or folder: {exc}")
    return found


def _parser() -> etree.XMLParser:
    # A new parser per call: lxml parsers must not be shared between threads. No entities, no network.
    return etree.XMLParser(resolve_entities=False, no_network=True, remove_comments=True, remove_pis=True)


def _parse(data: bytes, ctx: _Ctx, parser: etree.XMLParser) -> Element | None:
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if exc.lineno is not None else "?"
        ctx.error(Rule.UNPARSABLE_FILE, f"the file is not well-formed XML: {exc.msg}", f"line {line}")
        return None



# --------------------------------------------------------------------------- locations


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "(（"
        depth -= ch in ")）"
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def _location_names(text: str) -> I18n:
    """``"Suzhou (苏州), Jiangsu (江苏), China (中国)"`` -> en ``Suzhou, Jiangsu, China``, zh ``中国江苏苏州``."""
    if not _CJK_RE.search(text):
        return {"en": text}
    en: list[str] = []
    zh: list[str] = []
    for part in _split_top(text):
        m = re.match(r"^(.*?)\s*[(（]([^()（）]*)[)）]$", part)
        if m is None or not _CJK_RE.search(m.group(2)) or _CJK_RE.search(m.group(1)):
            return {"en": text}
        en.append(m.group(1).strip())
        zh.append(m.group(2).strip())
    return {"en": ", ".join(en), "zh": "".join(reversed(zh))}


def _parse_locations(data: bytes) -> dict[str, I18n]:
    root = etree.fromstring(data, _parser())
    out: dict[str, I18n] = {}
    for el in root.iter():
        if _local(el) != "location" or not el.get("value"):
            continue
        code = el.get("value", "").strip()
        text = (el.text or "").strip()
        if not text:
            out.setdefault(code, {})
            continue
        lang = el.get(XML_LANG)
        names = {lang: text} if lang else _location_names(text)
        out.setdefault(code, {}).update(names)
    return out


def read_locations(path: Path) -> dict[str, I18n]:
    """The location codes of an ``ILCDLocations.xml`` and their names per language.

    TianGong's sub-national codes (``SZ-JS-CN``) carry names like
    ``"Suzhou (苏州), Jiangsu (江苏), China (中国)"``: they are split into English
    (``"Suzhou, Jiangsu, China"``) and Chinese (``"中国江苏苏州"``, largest unit first). A
    ``location`` element with ``xml:lang`` gives that language directly. Process and flow
    locations stay the codes as imported; this table names them.

    Parameters
    ----------
    path
        The ``ILCDLocations.xml`` file.

    Returns
    -------
    dict
        Code -> {language: name}.
    """
    return _parse_locations(Path(path).read_bytes())



# --------------------------------------------------------------------------- read_ilcd


def read_ilcd(path: Path, *, strict: bool = False) -> tuple[Bundle, list[Diagnostic]]:
    """Read an ILCD zip or unzipped folder into a :class:`~lca.model.Bundle`.

    All eight modules are read (``processes/``, ``flows/``, ``flowproperties/``,
    ``unitgroups/``, ``lciamethods/``, ``sources/``, ``contacts/``, ``lifecyclemodels/``),
    wherever the module folders sit in the archive. See the module docstring for the
    mapping rules.

    Parameters
    ----------
    path
        An ILCD ``.zip`` or a folder holding the module folders (directly or below).
    strict
        When true, raise :class:`~lca.errors.ImportFailed` if any diagnostic is an error.

    Returns
    -------
    tuple
        The bundle (what could be read) and every diagnostic. Location codes are kept as
        imported; with an ``ILCDLocations.xml`` in the data, codes it lacks are warned about.
    """
    path = Path(path)
    diags: list[Diagnostic] = []
    bundle = Bundle()
    found = _gather(path, diags)
    locations = _known_locations(found, diags)
    parser = _parser()
    trees: dict[str, list[tuple[Element, _Ctx]]] = {kind: [] for kind in _READ_ORDER}
    for entry in found.entries:
        ctx = _Ctx(entry.name, diags)
        root = _parse(entry.data, ctx, parser)
        if root is None:
            continue
        expected = _ROOT[entry.kind]
        if _local(root) != expected:
            ctx.error(Rule.UNEXPECTED_TYPE, f"root element {_local(root)!r} is not {expected!r}; file skipped",
                      root, "root", _local(root))
            continue
        ns = etree.QName(root).namespace
        if ns != MODULE_NS[entry.kind]:
            ctx.warn(Rule.XSD_DEVIATION, f"root namespace {ns!r} is not {MODULE_NS[entry.kind]!r}; read by local names",
                     root, "xmlns", ns)
        _check_other_text(root, ctx)
        trees[entry.kind].append((root, ctx))
    readers: dict[str, Callable[[Element, _Ctx], Dataset | None]] = {
        "unit_group": _read_unit_group,
        "flow_property": _read_flow_property,
        "flow": _read_flow,
        "source": _read_source,
        "contact": _read_contact,
        "lcia_method": _read_method,
        "process": lambda root, ctx: _read_process(root, bundle, ctx, locations),
        "model": _read_model,
    }
    for kind in _READ_ORDER:
        for root, ctx in trees[kind]:
            try:
                ds = readers[kind](root, ctx)
            except ValueError as exc:  # pydantic validation of a value the checks above let through
                ctx.error(Rule.INVALID_DATASET, f"the data set cannot be read: {exc}", root)
                continue
            if ds is None:
                continue
            if ds.uuid in bundle.collection(kind):
                ctx.warn(Rule.DUPLICATE_UUID, f"a {kind} with UUID {ds.uuid} was read before; this one replaces it",
                         root, "UUID", ds.uuid)
            bundle.add(ds)
    if strict and any(d.severity == "error" for d in diags):
        raise ImportFailed(diags)
    return bundle, diags


def _known_locations(found: _Input, diags: list[Diagnostic]) -> set[str] | None:
    if found.locations is None:
        return None
    try:
        return set(_parse_locations(found.locations))
    except etree.XMLSyntaxError as exc:
        Reporter(found.locations_name, diags).error(Rule.UNPARSABLE_FILE, f"not well-formed XML: {exc.msg}")
        return None
