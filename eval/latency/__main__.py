"""`python -m eval.latency`: the command keeps its name; its code is `eval.latency.timing`."""

from eval.latency.timing import build_parser, main  # noqa: F401  (the docs' command checker)

if __name__ == "__main__":
    raise SystemExit(main())
