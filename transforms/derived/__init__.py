"""Derived tags (DESIGN §8): tags defined per tenant by an expression over other tags, parsed
from the definitions file, validated at load time and evaluated exactly on step functions.
Each part is imported from its module: definitions (the file), expression (the language),
evaluate (the step functions) and day (a day's derived rows).
"""
