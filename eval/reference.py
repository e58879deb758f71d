"""`python -m eval.reference`: the command keeps its name; its code is `eval.verdicts.reference`."""

from eval.verdicts.reference import build_parser, main  # noqa: F401  (the docs' command checker)

if __name__ == "__main__":
    raise SystemExit(main())
