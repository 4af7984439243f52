"""Packaging that pyproject.toml cannot say: the design card's top-level folders go in the wheel.

- ``stacks/`` (the Pulumi program) installs as the subpackage ``llmctl.stacks``, so no top-level
  ``stacks`` package lands in site-packages;
- ``engines/``, ``loadtests/`` and ``schemas/`` are copied to ``llmctl/_assets/`` at build time
  (``llmctl.assets.asset_dir`` finds them there, or in the checkout for editable installs).
"""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
ASSETS = ("engines", "loadtests", "schemas")


class BuildWithAssets(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's folders
        target = Path(self.build_lib) / "llmctl" / "_assets"
        for name in ASSETS:
            if not (ROOT / name).is_dir():
                raise SystemExit(
                    f"setup.py: {ROOT / name} is missing; build from a checkout or sdist"
                )
            shutil.rmtree(target / name, ignore_errors=True)
            shutil.copytree(
                ROOT / name, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )


setup(
    packages=[*find_packages(include=["llmctl", "llmctl.*"]), "llmctl.stacks"],
    package_dir={"llmctl.stacks": "stacks"},
    cmdclass={"build_py": BuildWithAssets},
)
