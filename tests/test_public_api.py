"""The package's public names, as README shows them."""

from __future__ import annotations

import subprocess
import sys


def test_build_stays_callable_after_its_module_is_imported() -> None:
    # `import envpack.build` rebinds the package attribute to the module; the README's
    # `envpack.build(spec, out)` must still call the function.
    code = (
        "import envpack, envpack.build\n"
        "from envpack.build import build\n"
        "assert callable(envpack.build)\n"
        "from envpack.analyzer.interpreter import probe\n"
        "spec = envpack.Spec(interpreter=probe().interpreter, roots=(), schema=99)\n"
        "try:\n"
        "    envpack.build(spec, '/nonexistent')\n"
        "    raise SystemExit('build() accepted a newer schema')\n"
        "except envpack.SpecError:\n"
        "    pass  # build() itself ran and refused the Spec\n"
        "assert envpack.analyze.__name__ == 'analyze'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_lazy_names_resolve() -> None:
    import envpack

    assert envpack.Spec.__name__ == "Spec"
    assert envpack.Environment.__name__ == "Environment"
    assert envpack.analyze_objects.__name__ == "analyze_objects"
    assert envpack.analyze_notebook.__name__ == "analyze_notebook"
