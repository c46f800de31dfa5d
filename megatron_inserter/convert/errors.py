"""The one error type conversion raises for bad input (the message names the tensor, field or file)."""

from megatron_inserter.errors import InserterError


class ConversionError(InserterError, ValueError):
    """Input that cannot be converted: unsupported architecture, missing/unexpected tensors, shape or
    config mismatches. Raised before anything is written to the output directory."""
