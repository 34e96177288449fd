"""Build step for the compiled thin CNI client (issue 18); everything else is in
pyproject.toml.  ``build_cclient`` runs as part of ``build`` (``pip install .``) and of
``pip install -e .`` (then the binary lands in the source tree).  Without a C compiler
it says so and the package installs with the Python thin client only."""

from __future__ import annotations

import os
import sys

from setuptools import Command, Distribution, setup
from setuptools.command.build import build

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE_DIR = os.path.join("tortie", "cni", "cclient")
sys.path.insert(0, os.path.join(HERE, "src", PACKAGE_DIR))
import build as cclient_build  # noqa: E402  (src/tortie/cni/cclient/build.py)

BINARY = "tortie-cni-client"


class BuildCclient(Command):
    description = "compile the thin CNI client (tortie_cni.c) when a C compiler is present"
    user_options: list[tuple[str, str | None, str]] = []
    editable_mode = False  # set by setuptools for ``pip install -e``

    def initialize_options(self) -> None:
        self.build_lib: str | None = None

    def finalize_options(self) -> None:
        self.set_undefined_options("build_py", ("build_lib", "build_lib"))

    def _target(self) -> str:
        if self.editable_mode:
            return os.path.join(HERE, "src", PACKAGE_DIR, BINARY)
        assert self.build_lib is not None
        return os.path.join(self.build_lib, PACKAGE_DIR, BINARY)

    def run(self) -> None:
        source = os.path.join(HERE, "src", PACKAGE_DIR, "tortie_cni.c")
        target = self._target()
        if cclient_build.find_compiler() is None:
            print("tortie: no C compiler found; installing the Python thin CNI client only")
            return
        os.makedirs(os.path.dirname(target), exist_ok=True)
        try:
            cclient_build.compile_client(source, target)
        except RuntimeError as exc:
            print(f"tortie: the compiled CNI client was not built ({exc}); "
                  "installing the Python thin client only")  # fmt: skip
            return
        print(f"tortie: built the compiled CNI client {target}")

    def get_outputs(self) -> list[str]:
        target = self._target()
        return [target] if os.path.exists(target) else []

    def get_output_mapping(self) -> dict[str, str]:
        return {}

    def get_source_files(self) -> list[str]:
        return [os.path.join("src", PACKAGE_DIR, "tortie_cni.c")]


class PlatformDistribution(Distribution):
    """The wheel holds an executable for this platform: tag it so, not ``any``."""

    def has_ext_modules(self) -> bool:
        return True


class Build(build):
    sub_commands = [*build.sub_commands, ("build_cclient", None)]


setup(cmdclass={"build": Build, "build_cclient": BuildCclient}, distclass=PlatformDistribution)
