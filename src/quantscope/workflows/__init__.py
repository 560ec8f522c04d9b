"""Workflows: what a command runs, with typed results and progress as a callback.

A workflow never imports typer or rich; the command in quantscope.cli parses options, passes a
presenter, prints the result and exits.
"""
