import sys

from lavt.cli import main

sys.exit(main())
