"""Templates of the verify reports (package data: see pyproject.toml, tool.setuptools.package-data)."""
