"""Architecture ablations for sub-billion-parameter LLMs (a MobileLLM reproduction platform).

Light on import: submodules (`ablations.model`, `ablations.budget`, …) are imported where needed.
"""

__version__ = "0.1.0"
