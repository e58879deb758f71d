"""`python -m eval.conclusion`: the command keeps its name; its code is `eval.verdicts.conclusion`."""

from eval.verdicts.conclusion import build_parser, main  # noqa: F401  (the docs' command checker)

if __name__ == "__main__":
    raise SystemExit(main())
