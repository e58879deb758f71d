"""`python -m eval.attention_stats`: the command keeps its name; its code is `eval.attention.measure`."""

from eval.attention.measure import build_parser, main  # noqa: F401  (the docs' command checker)

if __name__ == "__main__":
    raise SystemExit(main())
