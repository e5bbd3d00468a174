"""`python -m rwkvseg train | evaluate | predict` (see rwkvseg/cli.py)."""
import sys

from rwkvseg.cli import main

sys.exit(main())
