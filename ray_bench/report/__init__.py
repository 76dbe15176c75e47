"""Tables and figures a researcher can read and publish."""
