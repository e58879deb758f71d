"""`python -m eval.figures`: the command keeps its name; its code is `eval.attention.figures`."""

from eval.attention.figures import build_parser, main  # noqa: F401  (the docs' command checker)

if __name__ == "__main__":
    raise SystemExit(main())
