"""The applications of jepa-mpc, above the libraries (``sim``, ``planner``, ``world_model``,
``robots``): the ``jepa-mpc`` console script (``jepa_mpc.cli``) and its sub-commands (bench,
demo, collect, render, soak, presets, ...). Nothing below this package imports it."""
