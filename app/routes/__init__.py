"""Thin routes: parse, pick the model's runtime, call it, shape the response. No maths here."""
