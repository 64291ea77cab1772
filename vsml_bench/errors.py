"""The exception the command line turns into a message without a traceback."""


class UserError(ValueError):
    """Bad input from the user: an unknown name, a wrong option, a missing file.

    The message names the bad value and says what would be accepted.
    """
