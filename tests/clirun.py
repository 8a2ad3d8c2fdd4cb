"""Run the nasflow CLI inside the test process and capture what it prints."""
import contextlib
import io
import os


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_cli(*args, cache):
    """Run the CLI in this process (torch and dgl are already imported here, which a
    subprocess would pay seconds for) with ``$NASFLOW_CACHE`` set to ``cache``."""
    from nasflow.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    old = os.environ.get("NASFLOW_CACHE")
    os.environ["NASFLOW_CACHE"] = str(cache)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
                code = 0
            except SystemExit as e:
                code = e.code
    finally:
        if old is None:
            os.environ.pop("NASFLOW_CACHE", None)
        else:
            os.environ["NASFLOW_CACHE"] = old
    return Result(code, out.getvalue(), err.getvalue())
