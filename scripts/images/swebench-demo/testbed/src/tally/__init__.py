"""Counting and summarising words and numbers."""
