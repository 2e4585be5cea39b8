"""``platform serve``: the Python API over HTTP (FastAPI), with a search page at ``/``.

One :class:`embplat.api.Platform` per process, its encoder loaded at start-up; see
:func:`embplat.serve.app.create_app`.
"""
