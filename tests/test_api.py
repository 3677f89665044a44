"""The package's public face: names that share a submodule's name stay what the README says."""

from __future__ import annotations

import subprocess
import sys

from conftest import python_env


def test_nas_search_stays_the_function_after_its_module_is_imported() -> None:
    # importing the driver module (as nas.compress, nas.export or a user's `from nas.search
    # import ...` do) used to rebind `nas.search` to the module: `nas.search(...)` then raised
    # "'module' object is not callable"
    code = (
        "import nas.search, nas.export, nas.compress, nas\n"
        "from nas.search import SearchConfig\n"
        "assert callable(nas.search) and nas.search.__module__ == 'nas.search', nas.search\n"
        "assert callable(nas.resume)\n"
        "assert nas.objectives.Objective and nas.export.load_model is nas.load_model\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=python_env())
