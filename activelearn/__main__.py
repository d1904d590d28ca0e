import sys

from activelearn.cli import main

sys.exit(main())
