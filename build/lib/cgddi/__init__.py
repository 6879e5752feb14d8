"""Controllable generation of diverse dermatological imagery: a notebook-first compendium for fair dermatology AI"""

__version__ = "0.1.0"
