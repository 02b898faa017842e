"""spark-submit entry point of the organize stage: spark-submit jobs/organize.py --conf conf/local.yaml --date YYYY-MM-DD"""

import sys

from crmlake.jobs import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("organize"))
