"""Read and write ILCD 1.1 data (zip or folder) into and from the :mod:`lca.model` bundle.

Reading is tolerant: elements are found by their local names, whatever their namespace and
(mostly) their order, so that real data that fails the XSDs (the TianGong database does) can
still be read. Every deviation the reader copes with becomes a :class:`~lca.errors.Diagnostic`
naming the file, the XPath (local names, 1-based positions), the field and the value; nothing
raises on the first problem.

Mapping rules (ILCD -> model), where ILCD leaves a choice:

* Names: the parts ``baseName``, ``treatmentStandardsRoutes``, ``mixAndLocationTypes`` and
  ``functionalUnitFlowProperties`` (flows: ``flowProperties``) of one language are joined with
  ``"; "``; separators inside a part (TianGong's ``" ; "``) are kept verbatim. The writer puts
  the whole name into ``baseName``, so a name read back is the same string.
* Classifications: ``common:classification/@name`` is the system (``"ILCD"`` when absent), the
  ``common:class`` texts ordered by ``@level`` the path, the deepest class's ``@classId`` the code.
  Elementary flow categorisation becomes :attr:`Flow.compartment`.
* Exchange data source: ``dataSourceType`` Primary / "> 90% primary" -> primary, Secondary /
  "Mixed primary / secondary" -> secondary; without it ``dataDerivationTypeStatus`` Measured /
  Calculated -> primary, Estimated -> secondary, anything else (Unknown derivation, Missing ...)
  -> none. The writer writes ``dataSourceType``.
* Exchange unit: ILCD amounts are in the reference unit of the flow's reference flow property;
  that unit is looked up through the flow property's unit group.
* Uncertainty: ``relativeStandardDeviation95In`` is SDg^2 for log-normal (geosd = its square
  root, geomean = the mean amount) and 2*SD in percent of the mean for normal (sd = |mean| * v /
  200); ``minimumAmount`` / ``maximumAmount`` are kept for any distribution.
* Allocation: ``allocatedFraction`` is in percent (3 decimals in the XSD); the writer also
  stores the exact fraction in the extension namespace and the reader prefers it.
* Data quality indicators: ``Very good`` .. ``Very poor`` -> 1 .. 5.
* GWP set of an LCIA method: the ``pcf:gwpSet`` extension when present, else from the name,
  comments and methodology: "AR6" / "IPCC 2021" / "EF 3.1" -> AR6, "AR5" / "IPCC 2013" /
  "EF 3.0" -> AR5 (EF 3.0 used the IPCC 2013 factors, EF 3.1 the IPCC 2021 ones), "AR4" /
  "IPCC 2007" -> AR4.
* Versions: ILCD requires ``NN.NN.NNN``; a version like TianGong's ``00.01.05`` is read as
  ``00.01.005`` (same number, a warning says so). CAS numbers are read without leading zeros
  (``7440-09-7``) and written zero-padded as the XSD requires (``007440-09-7``).

Modules: ``codec`` (namespaces, folders, value tables, XML and text helpers), ``parsing`` (per-file
diagnostics and the parts every module reader shares), ``datasets`` and ``process`` (the module
readers), ``reader`` (:func:`read_ilcd`, :func:`read_locations`), ``writer`` (:func:`write_ilcd`,
:func:`dataset_xml`).

Fields ILCD lacks go into ``common:other`` in the namespace :data:`PCF_NS` (prefix ``pcf``):
``annualProduction`` (process), exact ``allocation``, ``uncertainty``, ``provider``, non-numeric
``internalId`` and amounts in a non-reference ``unit`` (exchange), ``gwpSet`` / ``indicator``
(LCIA method), ``location`` (life cycle model).
"""

from lca.io.ilcd.codec import COMMON_NS, MODULE_NS, PCF_NS
from lca.io.ilcd.datasets import detect_gwp_set
from lca.io.ilcd.reader import read_ilcd, read_locations
from lca.io.ilcd.writer import dataset_xml, write_ilcd

__all__ = [
    "COMMON_NS",
    "MODULE_NS",
    "PCF_NS",
    "dataset_xml",
    "detect_gwp_set",
    "read_ilcd",
    "read_locations",
    "write_ilcd",
]
