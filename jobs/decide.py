"""spark-submit entry point of the decide stage: spark-submit jobs/decide.py --conf conf/local.yaml --date YYYY-MM-DD"""

import sys

from crmlake.jobs import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("decide"))
