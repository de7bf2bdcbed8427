import sys

from .cli import main

if __name__ == "__main__":  # not in the hashing processes, which import this module again
    sys.exit(main())
