"""spark-submit entry point of lake maintenance: spark-submit jobs/maintain.py --conf conf/local.yaml

Compacts and vacuums every table of the catalog by lake.retention_days (``crmlake maintain``).
"""

import sys

from crmlake.cli import main

if __name__ == "__main__":
    sys.exit(main(["maintain", *sys.argv[1:]]))
