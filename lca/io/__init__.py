"""Reading and writing LCA data: the enterprise template, ILCD 1.1 and openLCA JSON-LD.

:mod:`lca.io.readers` is the one entry point for reading (``read_any`` detects the format);
:mod:`lca.io.diagnostics` holds the findings every reader reports, with one set of rule names.
"""
