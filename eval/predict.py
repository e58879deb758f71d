"""`python -m eval.predict`: the command keeps its name; its code is `eval.widerface.predict`."""

from eval.widerface.predict import build_parser, main  # noqa: F401  (the docs' command checker)

if __name__ == "__main__":
    raise SystemExit(main())
