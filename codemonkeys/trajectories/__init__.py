"""The multi-turn conversations of the generation and selection stages: testing, editing and selection."""
