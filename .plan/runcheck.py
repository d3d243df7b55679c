"""Dev helper: run one day's checks against a package dir and print the raw result JSON.
usage: /tmp/venv/bin/python .plan/runcheck.py 1.1 checks/answer_key [timeout]"""
import json, sys
sys.path.insert(0, "/work/main")
from tutor.checking.runner import run_day
r = run_day(sys.argv[1], sys.argv[2], float(sys.argv[3]) if len(sys.argv) > 3 else 60)
print(json.dumps(r, indent=1))
