"""A merge-queue runner in its own OS process, for the crash-recovery test.

    python tests/workers/merge_worker.py URL REPO TEST_COMMAND NOW

opens the coordinator on database URL with repository REPO and `parallel.test_command` set to
TEST_COMMAND, with the store's clock standing at NOW (the test's hand-moved clock), and runs the
merge queue until nothing is left. The test kills it in the middle of the test gate.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from coordinator.config import Config
from coordinator.service import Coordinator


async def main(url: str, repo: str, test_command: str, now: float) -> None:
    config = Config.model_validate({"parallel": {"test_command": test_command}})
    coord = await Coordinator.open(url, config, repo=Path(repo), clock=lambda: now)
    try:
        await coord.merges.drain()
    finally:
        await coord.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
