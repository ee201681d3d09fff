"""The base of tfvit's errors that a user can fix and that say how.

``tfvit.experiments.cli.run_recipe`` prints any of them as one ``error: ...`` paragraph with exit status 1,
without a traceback (``--debug`` shows it).
"""


class UserError(Exception):
    """A fault the user can fix; the message names what and how."""
