"""The ``ladon`` subcommands that have no other home: ``encode``, ``infer`` and ``convert``.

Each module has ``HELP``, ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``; :mod:`ladon.cli`
registers them beside ``bench``, ``synth``, ``train`` and ``eval``, which live with the code they drive.
"""
