"""`python -m rwkvseg ...`: the same command line as `rwkvseg ...` (rwkvseg/cli.py)."""
import sys

from rwkvseg.cli import main

sys.exit(main())
