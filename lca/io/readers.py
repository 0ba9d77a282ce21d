"""One reader interface for the enterprise template, ILCD and openLCA JSON-LD, and the format detection."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, Protocol

from lca.errors import ImportFailed
from lca.io.diagnostics import Diagnostic, Reporter, Rule, SourceMap
from lca.model import Bundle, dataset_kind

__all__ = [
    "READERS",
    "Format",
    "IlcdReader",
    "JsonLdReader",
    "ReadResult",
    "Reader",
    "TemplateReader",
    "detect_format",
    "read_any",
]

Format = Literal["template", "ilcd", "jsonld"]

_ACCEPTED = "template .csv/.xlsx, ILCD zip or folder of XML, openLCA JSON-LD zip or folder of JSON"


@dataclass
class ReadResult:
    """What a reader made of one source: the datasets, every finding, and where each dataset came from."""

    format: Format
    bundle: Bundle
    diagnostics: list[Diagnostic]
    sources: SourceMap


class Reader(Protocol):
    """A reader of one source format."""

    format: ClassVar[Format]

    def detect(self, path: Path) -> bool:
        """Whether ``path`` is in this reader's format.

        MUST NOT raise (an unreadable or missing path is simply not detected) and SHOULD look
        at names only (suffix, the names inside a zip or folder), not parse content.
        """
        ...

    def read(self, path: Path, known: Bundle | None = None) -> ReadResult:
        """Read ``path`` into a bundle.

        MUST NOT raise on bad data: every finding is a :class:`Diagnostic` naming the file,
        the location (row, XPath or JSON path), the field and the value, and NaN or infinite
        numbers are refused as ``non-finite-number`` errors. ``known`` holds datasets already
        known (reference data, the node's store) that the source MAY reference without
        defining them.
        """
        ...


def _names(path: Path) -> list[str] | None:
    """The file names in a folder or zip (None when it is neither, or the zip cannot be opened)."""
    if path.is_dir():
        return [p.name for p in path.rglob("*") if p.is_file()]
    if path.suffix.lower() != ".zip" or not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return None


class TemplateReader:
    """The enterprise template (:mod:`lca.io.template`), a ``.csv`` or ``.xlsx`` file."""

    format: ClassVar[Format] = "template"

    def detect(self, path: Path) -> bool:
        return path.suffix.lower() in (".csv", ".xlsx") and not path.is_dir()

    def read(self, path: Path, known: Bundle | None = None) -> ReadResult:
        from lca.io.template import read_template

        result = read_template(path, known)
        return ReadResult(self.format, result.bundle, result.diagnostics, result.sources)


class _DatasetArchiveReader:
    """A zip or folder of one file per dataset: each dataset points back to ``<source>:<folder>/<uuid>.<ext>``."""

    format: ClassVar[Format]
    extension: ClassVar[str]

    def detect(self, path: Path) -> bool:
        names = _names(path)
        return names is not None and any(n.lower().endswith(f".{self.extension}") for n in names)

    def read(self, path: Path, known: Bundle | None = None) -> ReadResult:
        bundle, diagnostics = self._read(path)
        folders = self._folders()
        sources = SourceMap()
        for ds in bundle.all():
            sources.datasets[ds.uuid] = (f"{path.name}:{folders[dataset_kind(ds)]}/{ds.uuid}.{self.extension}", "/")
        return ReadResult(self.format, bundle, diagnostics, sources)

    def _read(self, path: Path) -> tuple[Bundle, list[Diagnostic]]:
        raise NotImplementedError

    def _folders(self) -> dict[str, str]:
        raise NotImplementedError


class IlcdReader(_DatasetArchiveReader):
    """ILCD 1.1 (:mod:`lca.io.ilcd`): a zip or folder holding XML module folders."""

    format: ClassVar[Format] = "ilcd"
    extension: ClassVar[str] = "xml"

    def _read(self, path: Path) -> tuple[Bundle, list[Diagnostic]]:
        from lca.io.ilcd import read_ilcd

        return read_ilcd(path)

    def _folders(self) -> dict[str, str]:
        from lca.io.ilcd.codec import FOLDER_OF_KIND

        return FOLDER_OF_KIND


class JsonLdReader(_DatasetArchiveReader):
    """openLCA JSON-LD v1 or v2 (:mod:`lca.io.jsonld`): a zip or folder of JSON files."""

    format: ClassVar[Format] = "jsonld"
    extension: ClassVar[str] = "json"

    def _read(self, path: Path) -> tuple[Bundle, list[Diagnostic]]:
        from lca.io.jsonld import read_jsonld

        return read_jsonld(path)

    def _folders(self) -> dict[str, str]:
        from lca.io.jsonld.codec import FOLDER_OF_KIND

        return FOLDER_OF_KIND


#: The readers in the order detection tries them: a zip or folder holding XML is ILCD even
#: when it also holds JSON files.
READERS: tuple[Reader, ...] = (TemplateReader(), IlcdReader(), JsonLdReader())


def detect_format(path: Path) -> Reader:
    """The reader of ``path``: the first of :data:`READERS` that detects it.

    Raises
    ------
    ImportFailed
        With a ``missing-file`` diagnostic when ``path`` does not exist, ``unreadable-file``
        when it is a zip that cannot be opened, ``unknown-format`` when no reader detects it.
    """
    path = Path(path)
    report = Reporter(str(path), [])
    if not path.exists():
        report.error(Rule.MISSING_FILE, f"no such file or folder; accepted: {_ACCEPTED}")
        raise ImportFailed(report.out)
    for reader in READERS:
        if reader.detect(path):
            return reader
    if path.suffix.lower() == ".zip" and _names(path) is None:
        report.error(Rule.UNREADABLE_FILE, f"not a readable zip file; accepted: {_ACCEPTED}", field="suffix",
                     value=path.suffix)
    else:
        report.error(Rule.UNKNOWN_FORMAT, f"cannot tell the format; accepted: {_ACCEPTED}", field="suffix",
                     value=path.suffix)
    raise ImportFailed(report.out)


def read_any(path: Path, known: Bundle | None = None) -> ReadResult:
    """Detect the format of ``path`` and read it.

    Parameters
    ----------
    path
        A template ``.csv`` / ``.xlsx``, or an ILCD or JSON-LD ``.zip`` or folder.
    known
        Datasets already known (reference data, a store) that the source may reference.

    Returns
    -------
    ReadResult
        The format, the bundle, every diagnostic and where each dataset came from.

    Raises
    ------
    ImportFailed
        When the path does not exist or its format cannot be told (see :func:`detect_format`);
        problems inside a readable source are diagnostics, not exceptions.
    """
    return detect_format(Path(path)).read(Path(path), known)
