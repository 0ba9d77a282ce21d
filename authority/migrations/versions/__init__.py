"""Revisions of the membership authority's schema."""
