import sys

from hstlab.cli import main

sys.exit(main())
