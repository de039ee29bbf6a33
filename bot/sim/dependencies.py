"""The simulators' own dependencies (the `[sim]` extra), checked before one is started.

The AllToken SDK (its generated models validate request bodies) and Pillow (demo pictures) are
needed only by the simulators, so a production install leaves them out; starting a simulator
without them should say so in one line, not with an ImportError from deep inside.
"""

from __future__ import annotations

import importlib

# import name -> distribution name, as pip knows it.
SIM_DEPENDENCIES: dict[str, str] = {"alltoken.generated.chat": "alltoken", "PIL": "Pillow"}


class SimDependenciesMissing(SystemExit):
    """The `[sim]` extra is not installed; its message is the one line to show."""


def missing_sim_dependencies() -> list[str]:
    """The distributions of the `[sim]` extra that cannot be imported."""
    missing: list[str] = []
    for module, distribution in SIM_DEPENDENCIES.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(distribution)
    return missing


def require_sim_dependencies() -> None:
    """Raise SimDependenciesMissing naming what to install, if anything is missing.

    Like the CLI's configuration errors it is a SystemExit: the line is printed, status 1.
    """
    missing = missing_sim_dependencies()
    if missing:
        raise SimDependenciesMissing(
            f"tokenbot: the simulators need the [sim] extra ({', '.join(missing)} missing): "
            "pip install 'tokenbot[sim]' (in a checkout: pip install -e '.[sim]', or make demo)"
        )
