"""The one error type conversion raises for bad input (the message names the tensor, field or file)."""


class ConversionError(ValueError):
    """Input that cannot be converted: unsupported architecture, missing/unexpected tensors, shape or
    config mismatches. Raised before anything is written to the output directory."""
