"""`python -m core.data.synth` (the name the README uses) runs `python -m core.synth`, where the generator
lives: the data package below it does not import it."""

import argparse
import importlib
import runpy
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    """The command's flags (`core.synth.generate.build_parser`), looked up by name for the same reason."""
    return importlib.import_module("core.synth.generate").build_parser()


def main(argv: Sequence[str] | None = None) -> int:
    """`core.synth.generate.main`, looked up by name."""
    return importlib.import_module("core.synth.generate").main(argv)


if __name__ == "__main__":
    runpy.run_module("core.synth", run_name="__main__", alter_sys=True)
