"""`python -m eval.import_featherface`: the command keeps its name; its code is `eval.deploy.import_featherface`."""

from eval.deploy.import_featherface import build_parser, main  # noqa: F401  (the docs' command checker)

if __name__ == "__main__":
    raise SystemExit(main())
