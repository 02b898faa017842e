"""spark-submit entry point of the whole daily run, acquire -> organize -> analyze -> decide in one
Spark application: spark-submit jobs/all.py --conf conf/local.yaml --date YYYY-MM-DD"""

import sys

from crmlake.jobs import stage_main

if __name__ == "__main__":
    sys.exit(stage_main("all"))
