"""Stratus's shared domain and AWS adapters, imported by every Lambda function.

Nothing here imports torch or transformers: a function's cold start must stay small.
"""
