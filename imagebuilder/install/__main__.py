"""`python -m imagebuilder.install PLAN.json RESULT.json`: run one InstallPlan and leave through
os._exit (py-rattler can crash at interpreter exit). The result file holds the report or the
error; the parent (plan.run_install) re-raises it."""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    from imagebuilder.errors import ImgbuildError
    from imagebuilder.install.plan import InstallPlan, error_to_json, execute

    plan_file, result_file = argv
    try:
        with open(plan_file) as f:
            plan = InstallPlan.from_json(json.load(f))
        result = {"report": execute(plan).to_json()}
    except ImgbuildError as e:
        result = {"error": error_to_json(e)}
    except Exception as e:  # a bug: reported as internal, with its type
        result = {
            "error": {
                "kind": "internal",
                "message": f"internal error in the installer: {type(e).__name__}: {e}",
                "hint": "rerun with --debug and report it",
                "exit_code": 1,
            }
        }
    tmp = result_file + ".part"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, result_file)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
