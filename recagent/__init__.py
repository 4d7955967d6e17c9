"""recagent: agentic, tool-learning recommendation.

The core package holds only what every part shares: paths, errors, config and the CLI.
The four parts install beside it: ``recagent.tools`` (data, recommenders, retrieval, the
tool layer), ``recagent.agents``, ``recagent.synth`` and ``recagent.rl``. Importing this
package does no work and pulls in no heavy dependency.
"""

__version__ = "0.1.0"
