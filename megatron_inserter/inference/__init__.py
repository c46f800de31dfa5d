"""Generation from prompts that mix speech and text."""
