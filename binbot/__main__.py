import sys

from binbot.cli import main

sys.exit(main())
