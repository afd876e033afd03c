"""``python -m helpers.mock --port 8000 --rpm-limit 500``: run the mock server (flags: ``--help``)."""
from helpers.mock.server import main

main()
