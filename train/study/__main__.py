"""`python -m train.study`: the command keeps its name; its code is `train.study.run`."""

from train.study.run import build_parser, check_args, main  # noqa: F401  (the docs' command checker)

if __name__ == "__main__":
    raise SystemExit(main())
