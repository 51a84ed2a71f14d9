"""``python -m edgernn.cli``: the same entry point as the ``edgernn`` console script."""

from edgernn.cli.entry import main

if __name__ == "__main__":
    main()
