"""placeholder"""

EPILOG = ""


def analyze() -> None:
    """placeholder"""
    raise NotImplementedError
