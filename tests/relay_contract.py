"""The contract the receiver implements, as data: what `cargo run --example contract` prints
(receiver/src/contract.rs). Tests read names and numbers from here instead of repeating them."""

import functools
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN_DIR = Path(os.environ.get("RELAY_BIN_DIR", ROOT / "target" / "debug"))


@functools.cache
def contract():
    out = subprocess.run([str(BIN_DIR / "examples" / "contract")], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)
