"""`python -m eval.reference_assets`: the command keeps its name; its code is `eval.deploy.reference_assets`."""

from eval.deploy.reference_assets import build_parser, main  # noqa: F401  (the docs' command checker)

if __name__ == "__main__":
    raise SystemExit(main())
