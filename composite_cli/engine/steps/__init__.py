"""Built-in step kinds. Importing this package registers each one with the registry."""

from composite_cli.engine.steps import call, conditional, fanout, loop, reflect, rlm, synthesize, vote

__all__ = ["call", "conditional", "fanout", "loop", "reflect", "rlm", "synthesize", "vote"]
