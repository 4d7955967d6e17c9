"""Evaluation: utility and beyond-utility metrics, tool-call accuracy and simulated multi-turn success, leakage-checked."""
