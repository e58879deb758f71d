"""`python -m eval.export`: the command keeps its name; its code is `eval.deploy.export`."""

from eval.deploy.export import build_parser, main  # noqa: F401  (the docs' command checker)

if __name__ == "__main__":
    raise SystemExit(main())
