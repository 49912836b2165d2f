"""Thin routes: parse, call the engine, shape the response. No maths here."""
