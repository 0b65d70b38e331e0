"""A local emulator of Microsoft Entra ID v2.0 and the Dynamics 365 WhoAmI call.

Run it with `python -m entra_emulator`; drive it from tests with `entra_emulator.testing`.
It imports nothing from the Django project. See README.md in this directory.
"""
