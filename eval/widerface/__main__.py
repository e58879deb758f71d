"""`python -m eval.widerface`: the command keeps its name; its code is `eval.widerface.protocol`."""

from eval.widerface.protocol import build_parser, main  # noqa: F401  (the docs' command checker)

if __name__ == "__main__":
    raise SystemExit(main())
