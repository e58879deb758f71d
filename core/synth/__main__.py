"""`python -m core.synth`: the command keeps its name; its code is `core.synth.generate`."""

from core.synth.generate import build_parser, main  # noqa: F401  (the docs' command checker)

if __name__ == "__main__":
    raise SystemExit(main())
