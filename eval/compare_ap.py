"""`python -m eval.compare_ap`: the command keeps its name; its code is `eval.verdicts.paired_ap`."""

from eval.verdicts.paired_ap import build_parser, main  # noqa: F401  (the docs' command checker)

if __name__ == "__main__":
    raise SystemExit(main())
