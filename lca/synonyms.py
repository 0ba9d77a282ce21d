"""A bilingual synonym index over flows: names, CAS numbers, formulas, synonyms and common abbreviations."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from lca.model import Bundle, Flow

__all__ = ["COMMON_SYNONYMS", "SynonymIndex", "name_head", "normalise"]

#: Groups of terms that mean the same substance or product, in Chinese and English, with
#: formulas and CAS numbers. A flow joins a group when its CAS number, formula, name, name
#: head or a synonym equals one of the group's terms (after :func:`normalise`); every term of
#: the group then finds it. Kept small on purpose: the flow data's own synonyms do the rest.
COMMON_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("CO2", "二氧化碳", "carbon dioxide", "124-38-9"),
    ("CH4", "甲烷", "methane", "74-82-8"),
    ("N2O", "氧化亚氮", "一氧化二氮", "笑气", "nitrous oxide", "dinitrogen monoxide", "10024-97-2"),
    ("SF6", "六氟化硫", "sulfur hexafluoride", "sulphur hexafluoride", "2551-62-4"),
    ("NF3", "三氟化氮", "nitrogen trifluoride", "7783-54-2"),
    ("CF4", "四氟化碳", "四氟甲烷", "tetrafluoromethane", "perfluoromethane", "PFC-14", "75-73-0"),
    ("C2F6", "六氟乙烷", "hexafluoroethane", "perfluoroethane", "PFC-116", "76-16-4"),
    ("HFC-134a", "R-134a", "1,1,1,2-四氟乙烷", "1,1,1,2-tetrafluoroethane", "811-97-2"),
    ("electricity", "电力", "电", "电能", "electric power", "electrical energy", "power"),
    ("aluminium", "aluminum", "铝", "原铝", "电解铝", "primary aluminium", "primary aluminum", "Al", "7429-90-5"),
    ("cement clinker", "clinker", "水泥熟料", "熟料"),
    ("cement", "水泥", "portland cement", "硅酸盐水泥"),
    ("crude steel", "粗钢", "steel", "钢", "钢铁"),
    ("natural gas", "天然气", "NG"),
    ("coal", "煤", "原煤", "hard coal", "煤炭"),
    ("diesel", "柴油", "diesel oil"),
    ("steam", "蒸汽", "process steam", "水蒸气"),
    ("alumina", "氧化铝", "aluminium oxide", "aluminum oxide", "Al2O3", "1344-28-1"),
)

# Characters that separate words or decorate names; removed so that "Carbon dioxide",
# "carbon-dioxide", "CO(2)" and "CO₂" compare equal to "carbondioxide" / "co2".
_PUNCT = re.compile(r"[\s\-_‐-―·・,，;；:：()（）\[\]【】{}'\"“”‘’/\\.。]+")
_HEAD_SPLIT = re.compile(r"\s*[,，;；(（\[【]")


def normalise(text: str) -> str:
    """A comparison key: Unicode NFKC (full-width to half-width, ``₂`` to ``2``), case folded,
    without spaces and punctuation.

    >>> normalise("Ｃａｒｂｏｎ  Dioxide") == normalise("carbon-dioxide") == "carbondioxide"
    True
    >>> normalise("CO₂")
    'co2'
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _PUNCT.sub("", folded)


def name_head(name: str) -> str:
    """The part of a name before its first qualifier: ``"Electricity, medium voltage ; grid"``
    gives ``"Electricity"``, ``"carbon dioxide (fossil)"`` gives ``"carbon dioxide"``."""
    text = unicodedata.normalize("NFKC", name)
    return _HEAD_SPLIT.split(text, maxsplit=1)[0].strip()


def _is_cjk(key: str) -> bool:
    return any("\u3400" <= ch <= "\u9fff" for ch in key)


# Ranks of a match, best first.
_EXACT, _GROUP, _SYNONYM, _SUBSTRING = 0, 1, 2, 3


class SynonymIndex:
    """Finds flows (or anything with a UUID and names) by any of their names.

    Each entry is indexed under its names and name heads in every language, its CAS number and
    formula, its synonyms, and the terms of every :data:`COMMON_SYNONYMS` group it belongs to.
    :meth:`search` ranks exact name / CAS / formula matches first, then matches through a
    synonym group, then the data's own synonyms, then names containing the query.
    """

    def __init__(self, groups: Iterable[Iterable[str]] = COMMON_SYNONYMS) -> None:
        self._primary: dict[str, set[str]] = {}
        self._synonym: dict[str, set[str]] = {}
        self._names: dict[str, set[str]] = {}
        self._group_of: dict[str, set[int]] = {}
        for i, group in enumerate(frozenset(normalise(t) for t in g) for g in groups):
            for key in group:
                self._group_of.setdefault(key, set()).add(i)
        self._members: dict[int, set[str]] = {}
        self._order: dict[str, int] = {}

    @classmethod
    def from_bundle(cls, bundle: Bundle, groups: Iterable[Iterable[str]] = COMMON_SYNONYMS) -> SynonymIndex:
        """The index of every flow of ``bundle``."""
        return cls.from_flows(bundle.flows.values(), groups)

    @classmethod
    def from_flows(cls, flows: Iterable[Flow], groups: Iterable[Iterable[str]] = COMMON_SYNONYMS) -> SynonymIndex:
        """The index of ``flows``."""
        index = cls(groups)
        for flow in flows:
            index.add_flow(flow)
        return index

    def __len__(self) -> int:
        return len(self._order)

    def add_flow(self, flow: Flow) -> None:
        """Index one flow under its names, CAS number, formula and synonyms."""
        synonyms = [s for values in flow.synonyms.values() for value in values for s in _split_synonyms(value)]
        self.add(flow.uuid, flow.name.values(), cas=flow.cas, formula=flow.formula, synonyms=synonyms)

    def add(
        self,
        uuid: str,
        names: Iterable[str],
        *,
        cas: str | None = None,
        formula: str | None = None,
        synonyms: Iterable[str] = (),
    ) -> None:
        """Index ``uuid`` under ``names`` (any language), ``cas``, ``formula`` and ``synonyms``.

        Adding the same UUID again adds the new terms to it.
        """
        uuid = uuid.strip().lower()
        self._order.setdefault(uuid, len(self._order))
        primary: set[str] = set()
        for name in names:
            if not name:
                continue
            full, head = normalise(name), normalise(name_head(name))
            primary.update(k for k in (full, head) if k)
            self._names.setdefault(uuid, set()).add(full)
        for extra in (cas, formula):
            if extra and normalise(extra):
                primary.add(normalise(extra))
        secondary = {normalise(s) for s in synonyms if normalise(s)} - primary
        for key in primary:
            self._primary.setdefault(key, set()).add(uuid)
        for key in secondary:
            self._synonym.setdefault(key, set()).add(uuid)
        # Group membership is decided by the flow's own identifiers (names, CAS, formula), not
        # by its free-text synonyms: TianGong lists "Carbon dioxide ..." among the synonyms of
        # other substances, which must not pull them into the CO2 group.
        for key in primary:
            for gi in self._group_of.get(key, ()):
                self._members.setdefault(gi, set()).add(uuid)

    def search(self, query: str, *, substring: bool = True) -> list[str]:
        """UUIDs matching ``query``, best first (then in the order they were added).

        Parameters
        ----------
        query
            A name in any language, a CAS number, a formula or an abbreviation; compared after
            :func:`normalise`.
        substring
            Also return entries one of whose names contains the query. Only the literal query is
            matched this way, never the terms it expands to through a synonym group (so that
            "electricity" expanding to "电" does not find every name containing 电).
        """
        key = normalise(query)
        if not key:
            return []
        rank: dict[str, int] = {}

        def hit(uuids: Iterable[str], level: int) -> None:
            for u in uuids:
                if level < rank.get(u, 99):
                    rank[u] = level

        hit(self._primary.get(key, ()), _EXACT)
        for gi in self._group_of.get(key, ()):
            hit(self._members.get(gi, ()), _GROUP)
        hit(self._synonym.get(key, ()), _SYNONYM)
        # A query that is a flow's own exact name but belongs to no table group still expands
        # to the groups that flow belongs to (e.g. "Carbon dioxide, fossil" finds the biogenic
        # flow through the shared CAS number).
        for u in list(self._primary.get(key, ())):
            for members in self._members.values():
                if u in members:
                    hit(members, _GROUP)
        if substring and (len(key) >= 2 or _is_cjk(key)):
            hit((u for u, names in self._names.items() if any(key in n for n in names)), _SUBSTRING)
        return sorted(rank, key=lambda u: (rank[u], self._order[u]))


def _split_synonyms(value: str) -> list[str]:
    # ILCD packs synonyms into one string separated by ";" (TianGong also uses "; ").
    return [part.strip() for part in value.split(";") if part.strip()]
