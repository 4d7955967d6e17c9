"""recagent.synth: ToolACE-style synthesis of verified tool-learning dialogs (built on tools and agents)."""
