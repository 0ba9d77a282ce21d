"""openLCA JSON-LD (v1 and v2 layouts) reader and v2 writer, mapped to and from :mod:`lca.model`."""

# Modules: ``codec`` (folders, classification systems, the pcf: tags, id helpers), ``parsing``
# (the files of a zip or folder, per-file diagnostics, typed field readers), ``common`` (the
# state of one read and what every dataset reader shares), ``datasets`` and ``process`` (the
# dataset readers), ``reader`` (read_jsonld), ``writer`` (write_jsonld).
#
# How the two models meet (the choices a reader of this package needs to know):
#
# * Layout. A zip or folder with ``olca-schema.json`` saying ``{"version": 2}`` is the v2
#   layout (openLCA 2). Without it, it is the v1 layout of openLCA 1.x: exchanges say
#   ``input`` / ``quantitativeReference`` instead of ``isInput`` / ``isQuantitativeReference``,
#   flow property factors ``referenceFlowProperty``, units ``referenceUnit``, categories are
#   ``Category`` refs (with the full path only when ``categories/`` is present) and exchanges
#   have no ``internalId``. The ``olca_schema`` classes drop the v1 keys without a word, so the
#   reader works on the raw JSON (which also lets every diagnostic name its JSON path) and
#   accepts both spellings of each key; the ``olca_schema`` enums decide which vocabulary
#   values are accepted. The writer builds ``olca_schema`` objects and writes them with
#   ``olca_schema.zipio.ZipWriter``.
# * Languages and everything openLCA has no field for travel in the dataset's ``tags`` (a
#   list of strings that survives ``olca_schema``'s from_dict/to_dict and openLCA itself):
#   ``pcf:name@zh=...``, ``pcf:description@zh=...``, ``pcf:technology@zh=...``,
#   ``pcf:address@zh=...``; ``pcf:name-lang=zh`` when the ``name`` field holds a language
#   other than English (a dataset without an English name); ``pcf:classification={json}``
#   for classifications other than the openLCA category; ``pcf:extras={json}`` for the rest
#   (sub-location, annual production, more than one reference exchange, non-numeric
#   internal ids, exchange comments in other languages, uncertainty openLCA cannot express,
#   ...). ``%`` and ``,`` are percent-encoded in tags because openLCA stores tags joined by
#   commas. Tags that do not start with ``pcf:`` are ignored.
# * Category path -> ``Classification(system="openLCA category", path=[...])``; for
#   elementary flows the path is the ``compartment`` instead.
# * Data quality: openLCA's default system (the ecoinvent pedigree matrix) orders its
#   indicators reliability, completeness, temporal, geographical, (further) technological
#   correlation. They map to precision, completeness, temporal, geographical, technological
#   (reliability of the source is what ILCD calls precision). When the dqSystem is in the
#   data, its indicator names decide the order; otherwise the default order is assumed.
# * Allocation: of the factors in ``allocationFactors`` only those of the process's
#   ``defaultAllocationMethod`` are kept. A physical or economic factor of product P
#   becomes ``allocation[P's internal id]`` on every exchange that is not an allocated
#   product; a causal factor goes on the exchange it names. The writer writes physical
#   factors when every non-product exchange carries the same factors, causal ones otherwise.
# * Exchange internal ids are numbered 1..n in file order when the data has none (v1).
# * LCIA: each climate-change impact category is one ``LCIAMethod`` (its uuid is the
#   category's); the openLCA methods that list it become ``Classification(system="openLCA
#   impact method", code=method uuid, path=[method name])``. Other categories are skipped.
# * Not carried (no place in lca.model): parameters and formulas (the computed amounts are
#   read), costs, unit synonyms, documentation texts other than technology / validity /
#   sources / actors, allocation factors of other than the default method, avoided-product
#   flags (an avoided product reads as a product input, which is what it computes as).

from lca.io.jsonld.codec import CATEGORY_SYSTEM, DQ_ORDER, IMPACT_METHOD_SYSTEM, TAG_PREFIX
from lca.io.jsonld.reader import read_jsonld
from lca.io.jsonld.writer import write_jsonld

__all__ = [
    "CATEGORY_SYSTEM",
    "DQ_ORDER",
    "IMPACT_METHOD_SYSTEM",
    "TAG_PREFIX",
    "read_jsonld",
    "write_jsonld",
]
