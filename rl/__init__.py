"""recagent.rl: SFT and step-grained RL of the tool-calling policy with TRL (built on tools and agents)."""
