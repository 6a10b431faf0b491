"""Allow ``python -m kiln_operator`` as well as the ``kiln-operator`` script."""

from kiln_operator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
