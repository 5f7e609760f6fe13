"""The `cim` command, run from a checkout as `python cli.py ...`; the command itself lives in `cim.cli`.

The installed console script is `cim = cim.cli:main`, so a wheel ships no top-level `cli` module that could
clash with another distribution's.
"""

from cim.cli import EXIT_CODES, app, exit_code_for, main

__all__ = ["EXIT_CODES", "app", "exit_code_for", "main"]

if __name__ == "__main__":
    main()
