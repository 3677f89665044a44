"""`python -m nas ...` is the same as the `nas` command."""

import sys

from .cli import main

sys.exit(main())
