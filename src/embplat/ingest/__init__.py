"""Ingest: scan image trees (AwA2 or class-per-folder), validate and load images, build datasets.

Import the submodules directly (``embplat.ingest.scan``, ``embplat.ingest.images``,
``embplat.ingest.fashion_mnist``); this package imports nothing so that it stays cheap.
"""
