"""compatsolve: known-good LLM stacks for your hardware."""

__version__ = "0.1.0"
