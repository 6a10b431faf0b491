"""Allow ``python -m kiln_server`` as well as the ``kiln-server`` script."""

from kiln_server.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
