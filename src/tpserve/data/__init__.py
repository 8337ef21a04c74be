"""The files tpserve ships beside its modules, and the folder its commands write to unless told otherwise.

They are found through :mod:`importlib.resources`, so an installed wheel finds them as a checkout does:
Locust loads the Locust file by its path, and the chat preset's prompts are a prompt file like any other.
"""

from importlib import resources
from pathlib import Path

_HERE = resources.files(__name__)

LOCUSTFILE = Path(str(_HERE / "locustfile.py"))
CHAT_FILE = Path(str(_HERE / "chat.jsonl"))

# Relative to where a command runs; gitignored in a checkout, whose results/ holds only committed evidence.
OUTPUT_DIR = Path("tpserve-out")
