"""placeholder"""

EPILOG = ""


def demo() -> None:
    """placeholder"""
    raise NotImplementedError
