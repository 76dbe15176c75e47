"""placeholder"""

EPILOG = ""


def run() -> None:
    """placeholder"""
    raise NotImplementedError
