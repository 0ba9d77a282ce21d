"""GWP100 tables (IPCC AR5, AR6) and climate-change characterisation of a bundle's elementary flows.

Values come from ``lca/data/globalwarmingpotentials.csv`` (openclimatedata, CC0), columns
``AR5GWP100`` and ``AR6GWP100``; CO2 is 1 by definition and is not in the file.

Methane. The file has no fossil / non-fossil split. AR6 (WGI Table 7.15) gives fossil CH4
29.8 and non-fossil CH4 27.0 (the fossil value includes the CO2 from its oxidation); here
biogenic CH4 gets 27.0 and fossil and land-use CH4 get 29.8, as EF 3.1 does (land-use CH4
comes from a carbon stock that is not taken up again within the short cycle). For AR5 every
CH4 gets 28, the value without climate-carbon feedback that the UNFCCC transparency rules
(and so China's national GHG inventory) prescribe, although AR5 itself gives 30 for fossil
CH4. AR5 is the default set.

Which flows count. A flow is characterised when it is an elementary flow matched to a species
(by CAS number, then by normalised name, formula or synonym in any language, e.g. ``二氧化碳``,
``甲烷``, ``氧化亚氮``), and it is an emission to air (its compartment path mentions ``air``,
``大气`` or ``空气`` and is not a resource path). CO2 taken from air (a resource whose path
mentions air, e.g. "Resources from air", "natural resource/in air") counts -1: the -1/+1
approach, in which biogenic uptake and biogenic emission are both counted (ISO 14067 reports
them separately). An imported method, e.g. EF 3.1 which counts biogenic CO2 as 0, is used as
it is through :func:`method_from_lcia`.

Origin of a factor (:func:`classify_origin`), from the flow's names in every language:

1. ``land_use`` when a name mentions land use or land transformation ("land use change",
   "land transformation", "LULUC", "from soil or biomass stock", ``土地利用``, ``土地转化``);
2. otherwise ``biogenic`` when a name says biogenic or non-fossil ("biogenic", "non-fossil",
   "biomass", "short cycle", ``生物源``, ``生物质``, ``生物成因``, ``非化石``), and always for
   CO2 taken up from air;
3. otherwise ``fossil``: flows that say "fossil" and flows that say nothing (conservative).
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
import uuid as uuid_mod
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Literal

from lca.errors import NotFound
from lca.model import Bundle, CharacterisationFactor, Flow, LCIAMethod

__all__ = [
    "DEFAULT_GWP_SET",
    "GWP_SETS",
    "SPECIES",
    "GWPSet",
    "Origin",
    "Species",
    "characterisation_method",
    "classify_origin",
    "is_air_emission",
    "is_air_resource",
    "match_species",
    "method_from_lcia",
    "normalise_cas",
    "normalise_name",
]

Origin = Literal["fossil", "biogenic", "land_use"]

DEFAULT_GWP_SET = "AR5"
#: GWP set name -> column of the CSV.
GWP_SETS: dict[str, str] = {"AR5": "AR5GWP100", "AR6": "AR6GWP100"}
#: CH4 per set: (fossil and land use, biogenic); see the module docstring.
_CH4: dict[str, tuple[float, float]] = {"AR5": (28.0, 28.0), "AR6": (29.8, 27.0)}
_NAMESPACE = uuid_mod.UUID("6f1c1e0e-3f53-4d52-9a43-2f0d3b7c9a10")


@dataclass(frozen=True)
class Species:
    """A greenhouse gas: its key in the CSV, CAS numbers and the names it goes by."""

    key: str
    cas: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    """English, Chinese and code names (``R-134a``) and formulas; matched after normalisation."""


def _s(key: str, cas: str | tuple[str, ...] = (), *names: str) -> Species:
    return Species(key, (cas,) if isinstance(cas, str) else cas, (key, *names))


# CAS numbers checked against 40 CFR 98 Table A-1 and the Montreal Protocol annexes.
SPECIES: tuple[Species, ...] = (
    _s("CO2", "124-38-9", "carbon dioxide", "二氧化碳", "碳酸气"),
    _s("CH4", "74-82-8", "methane", "甲烷", "沼气甲烷"),
    _s("N2O", "10024-97-2", "nitrous oxide", "dinitrogen monoxide", "dinitrogen oxide",
       "氧化亚氮", "一氧化二氮", "笑气"),
    _s("CFC11", "75-69-4", "CFC-11", "R-11", "trichlorofluoromethane", "CCl3F", "三氯一氟甲烷", "三氯氟甲烷"),
    _s("CFC12", "75-71-8", "CFC-12", "R-12", "dichlorodifluoromethane", "CCl2F2", "二氯二氟甲烷"),
    _s("CFC13", "75-72-9", "CFC-13", "R-13", "chlorotrifluoromethane", "CClF3", "三氟一氯甲烷", "一氯三氟甲烷"),
    _s("CFC113", "76-13-1", "CFC-113", "R-113", "1,1,2-trichloro-1,2,2-trifluoroethane",
       "1,1,2-trichlorotrifluoroethane", "三氯三氟乙烷"),
    _s("CFC114", "76-14-2", "CFC-114", "R-114", "1,2-dichlorotetrafluoroethane",
       "1,2-dichloro-1,1,2,2-tetrafluoroethane", "二氯四氟乙烷"),
    _s("CFC115", "76-15-3", "CFC-115", "R-115", "chloropentafluoroethane", "一氯五氟乙烷"),
    _s("Halon1301", "75-63-8", "Halon 1301", "bromotrifluoromethane", "CBrF3", "三氟溴甲烷", "溴三氟甲烷"),
    _s("Halon1211", "353-59-3", "Halon 1211", "bromochlorodifluoromethane", "CBrClF2", "二氟一氯一溴甲烷"),
    _s("Halon2402", "124-73-2", "Halon 2402", "1,2-dibromotetrafluoroethane", "dibromotetrafluoroethane",
       "四氟二溴乙烷"),
    _s("Halon1202", "75-61-6", "Halon 1202", "dibromodifluoromethane", "CBr2F2", "二溴二氟甲烷"),
    _s("Halon1201", "1511-62-2", "Halon 1201", "bromodifluoromethane", "CHBrF2", "HBFC-22B1", "二氟一溴甲烷"),
    _s("CCl4", "56-23-5", "carbon tetrachloride", "tetrachloromethane", "四氯化碳", "四氯甲烷"),
    _s("CH3Br", "74-83-9", "methyl bromide", "bromomethane", "溴甲烷"),
    _s("CH2Br2", "74-95-3", "dibromomethane", "methylene bromide", "二溴甲烷"),
    _s("CH3CCl3", "71-55-6", "1,1,1-trichloroethane", "methyl chloroform", "1,1,1-三氯乙烷", "甲基氯仿"),
    _s("HCFC21", "75-43-4", "HCFC-21", "R-21", "dichlorofluoromethane", "一氟二氯甲烷"),
    _s("HCFC22", "75-45-6", "HCFC-22", "R-22", "chlorodifluoromethane", "CHClF2", "二氟一氯甲烷",
       "一氯二氟甲烷", "氯二氟甲烷"),
    _s("HCFC123", "306-83-2", "HCFC-123", "R-123", "2,2-dichloro-1,1,1-trifluoroethane", "三氟二氯乙烷"),
    _s("HCFC124", "2837-89-0", "HCFC-124", "R-124", "2-chloro-1,1,1,2-tetrafluoroethane", "四氟一氯乙烷"),
    _s("HCFC141b", "1717-00-6", "HCFC-141b", "R-141b", "1,1-dichloro-1-fluoroethane", "一氟二氯乙烷",
       "1,1-二氯-1-氟乙烷"),
    _s("HCFC142b", "75-68-3", "HCFC-142b", "R-142b", "1-chloro-1,1-difluoroethane", "二氟一氯乙烷",
       "1-氯-1,1-二氟乙烷"),
    _s("HCFC225ca", "422-56-0", "HCFC-225ca", "R-225ca", "3,3-dichloro-1,1,1,2,2-pentafluoropropane"),
    _s("HCFC225cb", "507-55-1", "HCFC-225cb", "R-225cb", "1,3-dichloro-1,1,2,2,3-pentafluoropropane"),
    _s("HFC23", "75-46-7", "HFC-23", "R-23", "trifluoromethane", "fluoroform", "CHF3", "三氟甲烷"),
    _s("HFC32", "75-10-5", "HFC-32", "R-32", "difluoromethane", "CH2F2", "二氟甲烷"),
    _s("HFC41", "593-53-3", "HFC-41", "R-41", "fluoromethane", "methyl fluoride", "CH3F", "一氟甲烷", "氟甲烷"),
    _s("HFC125", "354-33-6", "HFC-125", "R-125", "pentafluoroethane", "五氟乙烷"),
    _s("HFC134", "359-35-3", "HFC-134", "R-134", "1,1,2,2-tetrafluoroethane", "1,1,2,2-四氟乙烷"),
    _s("HFC134a", "811-97-2", "HFC-134a", "R-134a", "1,1,1,2-tetrafluoroethane", "norflurane",
       "1,1,1,2-四氟乙烷", "四氟乙烷"),
    _s("HFC143", "430-66-0", "HFC-143", "R-143", "1,1,2-trifluoroethane", "1,1,2-三氟乙烷"),
    _s("HFC143a", "420-46-2", "HFC-143a", "R-143a", "1,1,1-trifluoroethane", "1,1,1-三氟乙烷"),
    _s("HFC152", "624-72-6", "HFC-152", "R-152", "1,2-difluoroethane", "1,2-二氟乙烷"),
    _s("HFC152a", "75-37-6", "HFC-152a", "R-152a", "1,1-difluoroethane", "1,1-二氟乙烷"),
    _s("HFC161", "353-36-6", "HFC-161", "R-161", "fluoroethane", "ethyl fluoride", "氟乙烷"),
    _s("HFC227ea", "431-89-0", "HFC-227ea", "R-227ea", "1,1,1,2,3,3,3-heptafluoropropane",
       "heptafluoropropane", "七氟丙烷"),
    _s("HFC236cb", "677-56-5", "HFC-236cb", "R-236cb", "1,1,1,2,2,3-hexafluoropropane"),
    _s("HFC236ea", "431-63-0", "HFC-236ea", "R-236ea", "1,1,1,2,3,3-hexafluoropropane"),
    _s("HFC236fa", "690-39-1", "HFC-236fa", "R-236fa", "1,1,1,3,3,3-hexafluoropropane", "六氟丙烷"),
    _s("HFC245ca", "679-86-7", "HFC-245ca", "R-245ca", "1,1,2,2,3-pentafluoropropane"),
    _s("HFC245fa", "460-73-1", "HFC-245fa", "R-245fa", "1,1,1,3,3-pentafluoropropane", "五氟丙烷"),
    _s("HFC365mfc", "406-58-6", "HFC-365mfc", "R-365mfc", "1,1,1,3,3-pentafluorobutane", "五氟丁烷"),
    _s("HFC4310mee", "138495-42-8", "HFC-43-10mee", "R-43-10mee", "1,1,1,2,3,4,4,5,5,5-decafluoropentane"),
    _s("SO2F2", "2699-79-8", "sulfuryl fluoride", "sulphuryl fluoride", "硫酰氟"),
    _s("SF6", "2551-62-4", "sulfur hexafluoride", "sulphur hexafluoride", "六氟化硫"),
    _s("NF3", "7783-54-2", "nitrogen trifluoride", "三氟化氮"),
    _s("CF4", "75-73-0", "tetrafluoromethane", "perfluoromethane", "carbon tetrafluoride", "PFC-14", "FC-14", "R-14",
       "四氟化碳", "四氟甲烷", "全氟甲烷"),
    _s("C2F6", "76-16-4", "hexafluoroethane", "perfluoroethane", "PFC-116", "HFC-116", "FC-116", "R-116", "六氟乙烷", "全氟乙烷"),
    _s("C3F8", "76-19-7", "octafluoropropane", "perfluoropropane", "PFC-218", "R-218", "八氟丙烷", "全氟丙烷"),
    _s("cC4F8", "115-25-3", "c-C4F8", "octafluorocyclobutane", "perfluorocyclobutane", "PFC-318", "RC-318",
       "八氟环丁烷", "全氟环丁烷"),
    _s("C4F10", "355-25-9", "decafluorobutane", "perfluorobutane", "PFC-3-1-10", "十氟丁烷", "全氟丁烷"),
    _s("C5F12", "678-26-2", "dodecafluoropentane", "perfluoropentane", "PFC-4-1-12", "全氟戊烷"),
    _s("C6F14", "355-42-0", "tetradecafluorohexane", "perfluorohexane", "PFC-5-1-14", "全氟己烷"),
    _s("C7F16", "335-57-9", "hexadecafluoroheptane", "perfluoroheptane", "PFC-6-1-12", "全氟庚烷"),
    _s("C8F18", "307-34-6", "octadecafluorooctane", "perfluorooctane", "PFC-7-1-18", "全氟辛烷"),
    _s("C10F18", ("306-94-5", "60433-11-6", "60433-12-7"), "perfluorodecalin", "PFC-9-1-18", "全氟萘烷"),
    _s("SF5CF3", "373-80-8", "trifluoromethyl sulfur pentafluoride", "trifluoromethyl sulphur pentafluoride"),
    _s("cC3F6", "931-91-9", "c-C3F6", "perfluorocyclopropane", "hexafluorocyclopropane"),
    _s("HFE125", "3822-68-2", "HFE-125"),
    _s("HFE134", "1691-17-4", "HFE-134", "HG-00"),
    _s("HFE143a", "421-14-7", "HFE-143a"),
    _s("HCFE235da2", "26675-46-7", "HCFE-235da2", "isoflurane", "异氟烷"),
    _s("HFE245cb2", "22410-44-2", "HFE-245cb2"),
    _s("HFE245fa2", "1885-48-9", "HFE-245fa2"),
    _s("HFE347mcc3", "375-03-1", "HFE-347mcc3", "HFE-7000"),
    _s("HFE347pcf2", "406-78-0", "HFE-347pcf2"),
    _s("HFE356pcc3", "160620-20-2", "HFE-356pcc3"),
    _s("HFE569sf2", ("163702-05-4", "163702-06-5"), "HFE-569sf2", "HFE-7200"),
    _s("HFE7100", ("163702-07-6", "163702-08-7"), "HFE-7100", "HFE-449sl", "HFE-449s1"),
    _s("HFE236ca12", "78522-47-1", "HFE-236ca12", "HG-10"),
    _s("HFE338pcc13", "188690-78-0", "HFE-338pcc13", "HG-01"),
    _s("HFE4310pccc124", (), "HFE-43-10pccc124", "HFE-43-10pccc", "H-Galden 1040x", "HG-11"),
    _s("HFE227ea", "2356-62-9", "HFE-227ea"),
    _s("HFE236ea2", "57041-67-5", "HFE-236ea2", "desflurane", "地氟烷"),
    _s("HFE236fa", "20193-67-3", "HFE-236fa"),
    _s("HFE245fa1", "84011-15-4", "HFE-245fa1"),
    _s("HFE263fb2", "460-43-5", "HFE-263fb2"),
    _s("HFE329mcc2", "134769-21-4", "HFE-329mcc2"),
    _s("HFE338mcf2", "156053-88-2", "HFE-338mcf2"),
    _s("HFE347mcf2", "171182-95-9", "HFE-347mcf2"),
    _s("HFE356mec3", "382-34-3", "HFE-356mec3"),
    _s("HFE356pcf2", "50807-77-7", "HFE-356pcf2"),
    _s("HFE356pcf3", "35042-99-0", "HFE-356pcf3"),
    _s("HFE365mcf3", "378-16-5", "HFE-365mcf3"),
    _s("HFE374pc2", "512-51-6", "HFE-374pc2"),
    _s("(CF3)2CHOCH3", "13171-18-1", "HFE-356mmz1"),
    _s("(CF3)2CHOCHF2", "26103-08-2", "HFE-338mmz1"),
    _s("(CF3)2CHOH", "920-66-1", "hexafluoroisopropanol", "1,1,1,3,3,3-hexafluoro-2-propanol"),
    _s("CF3CH2OH", "75-89-8", "2,2,2-trifluoroethanol"),
    _s("CF3CF2CH2OH", "422-05-9", "2,2,3,3,3-pentafluoropropanol", "2,2,3,3,3-pentafluoro-1-propanol"),
    _s("-(CF2)4CH(OH)-", "16621-87-7", "2,2,3,3,4,4,5,5-octafluorocyclopentanol"),
    _s("CHCl3", "67-66-3", "chloroform", "trichloromethane", "三氯甲烷", "氯仿"),
    _s("CH2Cl2", "75-09-2", "dichloromethane", "methylene chloride", "二氯甲烷"),
    _s("CH3Cl", "74-87-3", "chloromethane", "methyl chloride", "氯甲烷", "一氯甲烷"),
    _s("CH3OCH3", "115-10-6", "dimethyl ether", "二甲醚"),
    _s("CF3I", "2314-97-8", "trifluoroiodomethane", "三氟碘甲烷"),
)


def normalise_cas(cas: str | None) -> str | None:
    """``'000124-38-9 '`` -> ``'124-38-9'``; ``None`` for empty or malformed numbers."""
    if not cas:
        return None
    text = unicodedata.normalize("NFKC", cas).strip().replace("\u2013", "-").replace("\u2011", "-")
    m = re.fullmatch(r"0*(\d{2,7})-(\d{2})-(\d)", text)
    return f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m else None


def normalise_name(name: str) -> str:
    """Case-, width- and separator-insensitive key: ``'HFC-134a'`` and ``'hfc 134a'`` -> ``'hfc134a'``."""
    text = unicodedata.normalize("NFKC", name).casefold()
    return re.sub(r"[\s\-_\u2010-\u2015'\"·]+", "", text)


_QUALIFIER = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")
# What may follow "<species>, " in a flow name: origin or compartment words, not the rest of a
# CAS index name ("Methane, phenyl-" is toluene).
_TAIL = re.compile(
    r"fossil|biogenic|biomass|land|soil|air|resource|short cycle|unspecified|emission|"
    r"化石|生物|土地|大气|空气|资源|排放"
)

_CODE = re.compile(r"(hfc|hcfc|cfc|pfc|fc|hfe|halon|r|rc)[\s\-]?\d[\w\-]*")


def _name_keys(name: str, split_tail: bool = True) -> list[str]:
    """Keys to look a flow name up under: the whole name, without qualifiers, before ', '."""
    text = unicodedata.normalize("NFKC", name).strip()
    head = text.split(";")[0].strip()
    bare = _QUALIFIER.sub("", head).strip()
    keys = [text, head, bare]
    if split_tail:
        # "Carbon dioxide, fossil", "Methane, non-fossil", "甲烷,生物源": the species is the
        # first part; a comma before a digit stays ("1,1,1,2-tetrafluoroethane").
        parts = re.split(r",\s*(?=\D)", bare, maxsplit=1)
        if len(parts) == 2 and _TAIL.search(parts[1].casefold()):
            keys.append(parts[0].strip())
        # ecoinvent's "Ethane, 1,1,1,2-tetrafluoro-, HFC-134a": the trade code names it.
        keys.extend(seg for seg in re.split(r",\s+", bare) if _CODE.fullmatch(seg.strip().casefold()))
    return [normalise_name(k) for k in keys if k]


@cache
def _index() -> tuple[dict[str, Species], dict[str, Species]]:
    by_cas: dict[str, Species] = {}
    by_name: dict[str, Species] = {}
    for sp in SPECIES:
        for cas in sp.cas:
            norm = normalise_cas(cas)
            assert norm is not None, cas
            by_cas[norm] = sp
        for name in sp.names:
            by_name.setdefault(normalise_name(name), sp)
    # British spelling of the sulfur compounds.
    for key, sp in list(by_name.items()):
        if "sulfur" in key:
            by_name.setdefault(key.replace("sulfur", "sulphur"), sp)
    return by_cas, by_name


def match_species(flow: Flow) -> Species | None:
    """The greenhouse gas a flow is: by CAS number, else by name, formula or synonym.

    A well-formed CAS number decides alone: a flow whose CAS is not in :data:`SPECIES` is no
    greenhouse gas here, whatever its synonyms say (toluene's synonym "Methane, phenyl-" must
    not make it methane). Without one, names are tried in every language, with and without
    qualifiers in parentheses and before a ``", "`` followed by an origin or compartment word
    (``"Carbon dioxide, fossil"`` is CO2), then the formula, then synonyms as they are.
    """
    by_cas, by_name = _index()
    cas = normalise_cas(flow.cas)
    if cas is not None:
        return by_cas.get(cas)
    candidates = [(text, True) for text in flow.name.values()]
    if flow.formula:
        candidates.append((flow.formula, False))
    candidates.extend((syn, False) for names in flow.synonyms.values() for syn in names)
    for text, split_tail in candidates:
        for key in _name_keys(text, split_tail):
            if key in by_name:
                return by_name[key]
    return None


def _path_text(flow: Flow) -> str:
    return " / ".join(unicodedata.normalize("NFKC", c).casefold() for c in flow.compartment)


def _is_resource_path(flow: Flow) -> bool:
    return any(
        c.strip().casefold().startswith(("resource", "natural resource")) or "资源" in c
        for c in flow.compartment
    )


def _mentions_air(flow: Flow) -> bool:
    path = _path_text(flow)
    return bool(re.search(r"\bair\b", path)) or "大气" in path or "空气" in path


def is_air_emission(flow: Flow) -> bool:
    """An elementary flow whose compartment path is an emission to air."""
    return flow.flow_type == "elementary" and _mentions_air(flow) and not _is_resource_path(flow)


def is_air_resource(flow: Flow) -> bool:
    """An elementary flow taken from air ("Resources from air", "natural resource/in air")."""
    return flow.flow_type == "elementary" and _mentions_air(flow) and _is_resource_path(flow)


_LAND_USE = re.compile(
    r"land[\s\-_]*(use|transformation|occupation)|luluc|\bluc\b|soil or biomass stock|土地利用|土地转化|土地转变"
)
_BIOGENIC = re.compile(
    r"biogenic|non[\s\-_]*fossil|biomass|short[\s\-_]*cycle|生物源|生物质|生物成因|非化石"
)


def classify_origin(flow: Flow) -> Origin:
    """``land_use``, ``biogenic`` or ``fossil`` from the flow's names (rule in the module docstring)."""
    text = " | ".join(unicodedata.normalize("NFKC", n).casefold() for n in flow.name.values())
    if _LAND_USE.search(text):
        return "land_use"
    if _BIOGENIC.search(text) or is_air_resource(flow):
        return "biogenic"
    return "fossil"


@dataclass(frozen=True)
class GWPSet:
    """GWP100 values of one IPCC report, in kg CO2e per kg of gas."""

    name: str
    values: dict[str, float] = field(repr=False)
    ch4_fossil: float
    ch4_non_fossil: float

    @classmethod
    def load(cls, name: str = DEFAULT_GWP_SET) -> GWPSet:
        """The set ``"AR5"`` or ``"AR6"`` read from the packaged CSV.

        Raises
        ------
        NotFound
            When ``name`` is not a known set.
        """
        return _load(name.strip().upper())

    def gwp(self, species: str, origin: Origin = "fossil") -> float | None:
        """GWP100 of ``species`` (a key of :data:`SPECIES`), CH4 by origin; ``None`` when not given."""
        if species == "CO2":
            return 1.0
        if species == "CH4":
            return self.ch4_non_fossil if origin == "biogenic" else self.ch4_fossil
        return self.values.get(species)


@cache
def _csv_rows() -> tuple[dict[str, str], ...]:
    text = resources.files("lca").joinpath("data/globalwarmingpotentials.csv").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return tuple(csv.DictReader(io.StringIO("\n".join(lines))))


@cache
def _load(name: str) -> GWPSet:
    column = GWP_SETS.get(name)
    if column is None:
        raise NotFound(f"GWP set {name!r} is unknown; accepted: {', '.join(GWP_SETS)}")
    values: dict[str, float] = {}
    for row in _csv_rows():
        cell = (row.get(column) or "").strip()
        if cell:
            values[row["Species"].strip()] = float(cell)
    fossil, non_fossil = _CH4[name]
    return GWPSet(name=name, values=values, ch4_fossil=fossil, ch4_non_fossil=non_fossil)


def characterisation_method(bundle: Bundle, gwp_set: str = DEFAULT_GWP_SET) -> LCIAMethod:
    """A climate-change method (GWP100 of ``gwp_set``) over the bundle's elementary flows.

    Parameters
    ----------
    bundle
        The flows to characterise; only its elementary flows are looked at.
    gwp_set
        ``"AR5"`` (default, what China's national inventory uses) or ``"AR6"``.

    Returns
    -------
    LCIAMethod
        ``gwp_set`` set, one factor per characterised flow (kg CO2e per reference unit of the
        flow, which must be mass), each with its ``species`` and ``origin``. The UUID depends
        on the GWP set only.
    """
    gs = GWPSet.load(gwp_set)
    factors: list[CharacterisationFactor] = []
    for flow in sorted(bundle.flows.values(), key=lambda f: f.uuid):
        if flow.flow_type != "elementary":
            continue
        species = match_species(flow)
        if species is None:
            continue
        origin = classify_origin(flow)
        if is_air_emission(flow):
            value = gs.gwp(species.key, origin)
        elif species.key == "CO2" and is_air_resource(flow):
            value = -1.0
        else:
            continue
        if value is None:
            continue
        factors.append(
            CharacterisationFactor(flow=flow.uuid, value=value, species=species.key, origin=origin)
        )
    return LCIAMethod(
        uuid=str(uuid_mod.uuid5(_NAMESPACE, f"climate change GWP100 {gs.name}")),
        name={"en": f"Climate change, GWP100 (IPCC {gs.name})", "zh": f"气候变化，GWP100（IPCC {gs.name}）"},
        indicator="climate change",
        reference_unit="kg CO2 eq",
        gwp_set=gs.name,
        factors=factors,
    )


def method_from_lcia(bundle: Bundle, method_uuid: str) -> LCIAMethod:
    """An imported LCIA method of the bundle, used as it is, its factors labelled.

    The factor values are not changed. Factors without ``species`` / ``origin`` get them from
    the flow (:func:`match_species`, :func:`classify_origin`) so that results split by gas and
    origin; a flow that is no known species keeps ``species`` ``None``. ``gwp_set`` is kept,
    or set to ``"AR6"`` when the method's description names IPCC 2021 / AR6 (EF 3.x does).

    Raises
    ------
    NotFound
        When the bundle has no method ``method_uuid``.
    """
    method = bundle.methods.get(method_uuid.strip().lower())
    if method is None:
        known = ", ".join(f"{m.uuid} ({m.display_name()})" for m in bundle.methods.values()) or "none"
        raise NotFound(f"LCIA method {method_uuid} is not in the bundle; it has: {known}")
    factors = []
    for cf in method.factors:
        flow = bundle.flows.get(cf.flow)
        species = cf.species
        origin = cf.origin
        if flow is not None:
            if species is None:
                found = match_species(flow)
                species = found.key if found else None
            if origin is None:
                origin = classify_origin(flow)
        factors.append(cf.model_copy(update={"species": species, "origin": origin}))
    gwp = method.gwp_set
    if gwp is None:
        text = " ".join([*method.description.values(), *method.name.values()]).casefold()
        if "ipcc 2021" in text or "ar6" in text:
            gwp = "AR6"
    return method.model_copy(update={"factors": factors, "gwp_set": gwp})
