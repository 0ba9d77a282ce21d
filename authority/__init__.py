"""The membership authority: certifies firms' identity keys against their Unified Social Credit Codes."""
