"""recagent: agentic, tool-learning recommendation.

The core package holds only what every part shares: paths, errors, config, file hashing, the
held-out chat requests and the dialog row format (``recagent.dialogs``). Six parts install beside
it under ``recagent.*`` from top-level folders: ``recagent.tools`` (data, recommenders, retrieval,
the tool layer), ``recagent.agents`` (the conversational agent and its policies),
``recagent.synth`` (dialog synthesis), ``recagent.rl`` (SFT and RL training), ``recagent.serve``
(the OpenAI-compatible server) and ``recagent.evaluation``; the command line, ``recagent.cli``,
sits on top of them all. Layers, bottom to top (a module imports only from its own part or
parts below; synth, rl and serve are siblings and import none of each other; checked by
tests/test_layering.py)::

    core <- tools <- agents <- synth | rl | serve <- evaluation <- cli

Importing this package does no work and pulls in no heavy dependency.
"""

__version__ = "0.1.0"
