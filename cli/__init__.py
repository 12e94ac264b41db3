"""The ``urbanvis`` command line (installed as the ``urbanvis_cli`` package)."""
