"""The base of every error that means "your input or set-up is wrong", not "the code is broken".

The CLI prints these as one clear message and exits 1; anything else keeps its traceback.
"""


class DermsynthError(Exception):
    """A problem with the data, the parameters or the environment that the user can fix."""
