"""Renderers: each turns a result into text for one format. No judgement happens here."""
